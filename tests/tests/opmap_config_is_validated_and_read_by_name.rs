//! opmap's settings: zero workers, an unknown mode or a mode not available yet give an error that
//! names the field; a config read from JSON builds the same opmap as the setters.

use opero::{opmap, ErrorKind, Mode, OpmapBuilder, OpmapConfig};

#[test]
fn zero_workers_is_an_error_naming_workers_in_every_mode() {
    for mode in [Mode::Thread, Mode::Rayon] {
        let err = opmap()
            .mode(mode)
            .workers(0)
            .wrap(|x: &u8| Ok::<_, String>(*x))
            .unwrap_err();
        assert_eq!(err.field(), Some("workers"));
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    }
    let err = opmap()
        .workers(0)
        .wrap_async(|x: u8| async move { Ok::<_, String>(x) })
        .unwrap_err();
    assert_eq!(err.field(), Some("workers"));
}

#[test]
fn process_modes_point_a_closure_to_wrap_process() {
    for mode in [Mode::Process, Mode::AsyncProcess] {
        let err = opmap()
            .mode(mode)
            .wrap(|x: &u8| Ok::<_, String>(*x))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert_eq!(err.field(), Some("mode"));
        assert_eq!(err.value(), Some(mode.name()));
        assert!(err.to_string().contains("wrap_process"), "{err}");
        let err = opmap()
            .mode(mode)
            .wrap_async(|x: u8| async move { Ok::<_, String>(x) })
            .unwrap_err();
        assert!(err.to_string().contains("wrap_process"), "{err}");
    }
}

#[test]
fn modes_are_read_by_name_and_an_unknown_one_is_a_typed_error() {
    for name in ["thread", "rayon", "async", "process", "async_process"] {
        let cfg = OpmapConfig::from_json(&format!(r#"{{"mode": "{name}"}}"#)).unwrap();
        assert_eq!(cfg.mode.name(), name);
    }
    let err = OpmapConfig::from_json(r#"{"mode": "threads"}"#).unwrap_err();
    assert_eq!(err.field(), Some("mode"));
    assert_eq!(err.value(), Some("threads"));
}

#[test]
fn a_config_from_json_builds_an_opmap() {
    let cfg = OpmapConfig::from_json(
        r#"{"mode": "rayon", "workers": 3, "progress": false, "retry": {"retries": 0},
            "cache": {"enabled": true}}"#,
    )
    .unwrap();
    let map = OpmapBuilder::<opero::AnyCache>::from_config(cfg)
        .wrap(|x: &u32| Ok::<_, String>(x + 1))
        .unwrap();
    assert_eq!(map.call([1, 2]), [Ok(2), Ok(3)]);
    assert_eq!(map.call([1]), [Ok(2)]);
    assert_eq!(map.opero().metrics().cache_hits, 1);
    assert_eq!(map.opero().cache_config().namespace, "opero_opmap_item");
}

#[test]
fn a_bad_pipeline_setting_is_an_error_too() {
    let err = opmap()
        .backoff_factor(f64::NAN)
        .wrap(|x: &u8| Ok::<_, String>(*x))
        .unwrap_err();
    assert_eq!(err.field(), Some("retry.backoff_factor"));
    let err = opmap()
        .rate_limit(0.0)
        .wrap(|x: &u8| Ok::<_, String>(*x))
        .unwrap_err();
    assert_eq!(err.field(), Some("rate_limit.rate"));
}

fn double(x: &u32) -> Result<u32, String> {
    Ok(x * 2)
}

async fn double_async(x: u32) -> Result<u32, String> {
    Ok(x * 2)
}

#[test]
fn worker_processes_without_the_init_line_are_an_error_that_names_it() {
    // This test binary has no `enable_process_test_support!()`: a worker would not know it is
    // one, so no worker is started and the error says which line is missing.
    let err = opmap().progress(false).wrap_process(double).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Executor);
    assert!(err.to_string().contains("opero::init_workers()"), "{err}");
    let err = opmap()
        .progress(false)
        .wrap_process_async(double_async)
        .unwrap_err();
    assert!(
        err.to_string().contains("enable_process_test_support"),
        "{err}"
    );
}
