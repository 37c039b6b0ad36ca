//! The progress bar of one map: position, rate, ETA and failures so far, on stderr.
//!
//! When the application installed tracing-indicatif's `IndicatifLayer`, the bar belongs to an
//! `opmap` span and the layer draws it, so that log lines written through the layer's writer print
//! above the bar instead of through it. Otherwise the bar is drawn by indicatif directly.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};
use tracing_indicatif::span_ext::IndicatifSpanExt;

const TEMPLATE: &str =
    "{spinner} opmap [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, ETA {eta}) {msg}";
const TEMPLATE_UNKNOWN_LEN: &str =
    "{spinner} opmap [{elapsed_precise}] {pos} done ({per_sec}) {msg}";

enum Bar {
    /// Drawn by indicatif on `term`, which the bar's end needs too.
    Own(ProgressBar, SharedTerm),
    Span(tracing::Span),
}

/// A terminal shared by indicatif and the bar's owner: indicatif leaves the cursor at the end of
/// the last frame, so the owner ends that line when the map is done.
#[derive(Clone, Debug)]
struct SharedTerm(Arc<dyn TermLike>);

impl TermLike for SharedTerm {
    fn width(&self) -> u16 {
        self.0.width()
    }
    fn height(&self) -> u16 {
        self.0.height()
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_up(n)
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_down(n)
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_right(n)
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_left(n)
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.0.write_line(s)
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.0.write_str(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.0.clear_line()
    }
    fn flush(&self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// How often the bar is told of the items done since it was last told: items are counted in an
/// atomic and handed to the bar in batches, which keeps the bar's own clock reads and locks off
/// the per-item path of a map of fast items.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// A live bar; dropped when the map ends.
pub(crate) struct Progress {
    bar: Bar,
    failures: AtomicU64,
    /// Items done and not yet on the bar.
    pending: AtomicU64,
    /// When the bar was last told, in nanoseconds since `epoch`.
    flushed_at: AtomicU64,
    epoch: std::time::Instant,
}

impl Progress {
    /// A bar for `len` items (unknown for streams), or `None` when progress is off or stderr is
    /// not a terminal, so that a map without a bar pays for nothing.
    pub(crate) fn start(enabled: bool, len: Option<usize>) -> Option<Progress> {
        if !enabled || !std::io::stderr().is_terminal() {
            return None;
        }
        Some(Self::on(len, Arc::new(console::Term::stderr())))
    }

    /// A bar for `len` items drawn on `term` (or on tracing-indicatif's layer when installed).
    fn on(len: Option<usize>, term: Arc<dyn TermLike>) -> Progress {
        let template = if len.is_some() {
            TEMPLATE
        } else {
            TEMPLATE_UNKNOWN_LEN
        };
        // indicatif's own `{per_sec}` prints four decimals; one is enough to read a rate.
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key(
                "per_sec",
                |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.1}/s", state.per_sec());
                },
            );
        let bar = if tracing_indicatif::writer::get_indicatif_stderr_writer().is_some() {
            let span = tracing::info_span!(target: "opero", "opmap", indicatif.pb_show = true);
            span.pb_set_style(&style);
            if let Some(len) = len {
                span.pb_set_length(len as u64);
            }
            span.pb_start();
            Bar::Span(span)
        } else {
            let term = SharedTerm(term);
            let bar = ProgressBar::with_draw_target(
                len.map(|n| n as u64),
                ProgressDrawTarget::term_like(Box::new(term.clone())),
            );
            bar.set_style(style);
            Bar::Own(bar, term)
        };
        Progress {
            bar,
            failures: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            flushed_at: AtomicU64::new(0),
            epoch: std::time::Instant::now(),
        }
    }

    /// Books one finished item: on the bar at once when it failed, else with the next batch.
    pub(crate) fn item_done(&self, ok: bool) {
        self.pending.fetch_add(1, Ordering::Relaxed);
        if !ok {
            let failed = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
            self.flush();
            let message = format!("{failed} failed");
            match &self.bar {
                Bar::Own(bar, _) => bar.set_message(message),
                Bar::Span(span) => span.pb_set_message(&message),
            }
            return;
        }
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let last = self.flushed_at.load(Ordering::Relaxed);
        // One worker wins each flush; the others keep counting.
        if now.saturating_sub(last) >= FLUSH_EVERY.as_nanos() as u64
            && self
                .flushed_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.flush();
        }
    }

    /// Hands the items counted so far to the bar.
    fn flush(&self) {
        let done = self.pending.swap(0, Ordering::Relaxed);
        if done == 0 {
            return;
        }
        match &self.bar {
            Bar::Own(bar, _) => bar.inc(done),
            Bar::Span(span) => span.pb_inc(done),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.flush();
        if let Bar::Own(bar, term) = &self.bar {
            bar.finish();
            // The last frame stays on screen; the next output starts on a line of its own.
            let _ = term.write_str("\n");
            let _ = term.flush();
        }
    }
}

/// Books an item on the bar, if there is one.
#[inline]
pub(crate) fn done(progress: Option<&Progress>, ok: bool) {
    if let Some(p) = progress {
        p.item_done(ok);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A terminal that records what is written to it.
    #[derive(Debug, Default)]
    struct Recorder(Mutex<String>);

    impl TermLike for Recorder {
        fn width(&self) -> u16 {
            80
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            let mut out = self.0.lock().unwrap();
            out.push_str(s);
            out.push('\n');
            Ok(())
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().unwrap().push_str(s);
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            self.0.lock().unwrap().push('\r');
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_bar_ends_with_a_newline_of_its_own() {
        let term = Arc::new(Recorder::default());
        let progress = Progress::on(Some(3), term.clone());
        for ok in [true, false, true] {
            progress.item_done(ok);
        }
        drop(progress);
        let out = term.0.lock().unwrap().clone();
        let last = out.rsplit('\r').next().unwrap();
        assert!(
            last.contains("3/3"),
            "the last frame shows the end: {out:?}"
        );
        assert!(last.contains("1 failed"), "{out:?}");
        assert!(
            out.ends_with('\n'),
            "the next output starts on its own line: {out:?}"
        );
        assert!(!out.ends_with("\n\n"), "and no blank line is left: {out:?}");
    }
}
