//! The CLI commands called as library functions, as `parity` calls them.
use harness::commands::{dispatch, list::ListArgs, validate::ValidateArgs, Cmd};
use std::path::PathBuf;

fn scenarios() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("../scenarios")
}

#[tokio::test]
async fn the_shipped_scenarios_validate_and_list() {
    assert_eq!(dispatch(Cmd::Validate(ValidateArgs { files: vec![scenarios()] })).await, 0);
    let all = harness::scenario::files_in(&scenarios()).unwrap();
    let (ok, errs) = harness::scenario::load_all(&all);
    assert!(errs.is_empty(), "{errs:?}");
    assert!(ok.len() >= 29, "{} scenarios", ok.len());
    assert_eq!(dispatch(Cmd::List(ListArgs { targets: vec![scenarios().display().to_string()], tag: vec![] })).await, 0);
}

#[tokio::test]
async fn missing_files_are_usage_errors() {
    assert_eq!(dispatch(Cmd::Validate(ValidateArgs { files: vec!["/nonexistent/x.yaml".into()] })).await, 2);
    assert_eq!(dispatch(Cmd::List(ListArgs { targets: vec!["/nonexistent/x.yaml".into()], tag: vec![] })).await, 2);
}

#[tokio::test]
async fn an_invalid_file_fails_validation() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.yaml");
    std::fs::write(&f, "id: bad\ndescription: d\nsteps:\n  - send: {nope: 1}\n").unwrap();
    assert_eq!(dispatch(Cmd::Validate(ValidateArgs { files: vec![f] })).await, 2);
}
