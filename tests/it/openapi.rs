#[test]
fn committed_openapi_document_is_current() {
    let path = crate::common::root().join("schemas/openapi.json");
    let current = tenantry::api::openapi_json_string();
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == current,
        "schemas/openapi.json is stale: run `make openapi` and commit it"
    );
}
