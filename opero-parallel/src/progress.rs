//! The progress bar of one map: position, rate, ETA and failures so far, on stderr.
//!
//! When the application installed tracing-indicatif's `IndicatifLayer`, the bar belongs to an
//! `opmap` span and the layer draws it, so that log lines written through the layer's writer print
//! above the bar instead of through it. Otherwise the bar is drawn by indicatif directly.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing_indicatif::span_ext::IndicatifSpanExt;

const TEMPLATE: &str =
    "{spinner} opmap [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, ETA {eta}) {msg}";
const TEMPLATE_UNKNOWN_LEN: &str =
    "{spinner} opmap [{elapsed_precise}] {pos} done ({per_sec}) {msg}";

enum Bar {
    Own(ProgressBar),
    Span(tracing::Span),
}

/// A live bar; dropped when the map ends.
pub(crate) struct Progress {
    bar: Bar,
    failures: AtomicU64,
}

impl Progress {
    /// A bar for `len` items (unknown for streams), or `None` when progress is off or stderr is
    /// not a terminal, so that a map without a bar pays for nothing.
    pub(crate) fn start(enabled: bool, len: Option<usize>) -> Option<Progress> {
        if !enabled || !std::io::stderr().is_terminal() {
            return None;
        }
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
            let bar =
                ProgressBar::with_draw_target(len.map(|n| n as u64), ProgressDrawTarget::stderr());
            bar.set_style(style);
            Bar::Own(bar)
        };
        Some(Progress {
            bar,
            failures: AtomicU64::new(0),
        })
    }

    /// Books one finished item.
    pub(crate) fn item_done(&self, ok: bool) {
        let message = (!ok).then(|| {
            let failed = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
            format!("{failed} failed")
        });
        match &self.bar {
            Bar::Own(bar) => {
                bar.inc(1);
                if let Some(m) = message {
                    bar.set_message(m);
                }
            }
            Bar::Span(span) => {
                span.pb_inc(1);
                if let Some(m) = message {
                    span.pb_set_message(&m);
                }
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Bar::Own(bar) = &self.bar {
            bar.finish();
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
