//! Prints the AurenRuntime CRD as YAML: `cargo run -p auren-operator --bin crdgen > crds/aurenruntime.yaml`.

fn main() -> anyhow::Result<()> {
    print!("{}", auren_operator::api::crd_yaml()?);
    Ok(())
}
