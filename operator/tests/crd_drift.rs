//! The committed CRD must be what the Rust types generate.

#[test]
fn committed_crd_matches_the_rust_types() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/aurenruntime.yaml");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let generated = auren_operator::api::crd_yaml().expect("the CRD serialises");
    assert!(
        committed == generated,
        "crds/aurenruntime.yaml is out of date with operator/src/api; regenerate it with\n\
         \tcargo run -q -p auren-operator --bin crdgen > crds/aurenruntime.yaml"
    );
}
