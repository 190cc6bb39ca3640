//! Microsoft's own examples (x-ms-examples in the published Microsoft.Sql specs, `shared/reference/arm-spec`)
//! replayed against the management API, names and ids adapted to the test instance: each answer's status is one
//! the example lists and its body validates against the schema milink serves at /openapi.json.

mod common;

use common::*;
use serde_json::Value;
use std::path::PathBuf;

const MI: &str = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Sql/managedInstances/{managedInstanceName}";

fn spec_dir() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/arm-spec");
    d.exists().then_some(d)
}

/// The served api-version for an example's: newer ones than milink serves map to 2023-08-01, and the
/// upstream quirk "2021-05-01" (DAG delete) to 2021-05-01-preview.
fn served_version(v: &str) -> &str {
    match v {
        "2021-05-01" => "2021-05-01-preview",
        v if mgmt::API_VERSIONS.contains(&v) => v,
        _ => "2023-08-01",
    }
}

/// (example file, method, path template, the refusal expected instead of the example's statuses)
type Step = (String, &'static str, String, Option<(u16, &'static str)>);

#[test]
fn microsofts_examples_replay_with_their_status_codes_and_the_served_schemas() {
    let Some(spec) = spec_dir() else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("shared/reference/arm-spec is missing beside the repository");
        }
        eprintln!("SKIP: shared/reference/arm-spec not found beside the repository");
        return;
    };
    let sd = tempfile::tempdir().unwrap();
    let md = tempfile::tempdir().unwrap();
    let blob = sql_server_certificate(sd.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_mi, _api, port) = start_mi(&rt, md.path(), "testcl", "testrg");
    let (st, _, doc) = http(port, "GET", "/openapi.json", None, "");
    assert_eq!(st, 200, "the document needs no token");
    // The validator itself: az's old casing of an enum, a bad uuid and a missing location are caught.
    let mut errs = Vec::new();
    let bad = serde_json::json!({"properties": {"distributedAvailabilityGroupId": "dag", "databases": [{"connectedState": "Connected"}]}});
    validate(
        &doc,
        &doc["definitions"]["DistributedAvailabilityGroup"],
        &bad,
        "",
        &mut errs,
    );
    validate(
        &doc,
        &doc["definitions"]["ManagedInstance"],
        &serde_json::json!({}),
        "",
        &mut errs,
    );
    assert_eq!(errs.len(), 4, "{errs:?}"); // location: required by ManagedInstance and by TrackedResource

    // The seed's upload first: a link's PUT needs SQL Server's certificate.
    let (st, _, body) = http(
        port,
        "POST",
        &format!("/subscriptions/{SUB}/resourceGroups/testrg/providers/Microsoft.Sql/managedInstances/testcl/hybridCertificate?api-version=2020-11-01-preview"),
        Some(TOKEN),
        &format!("{{\"properties\":{{\"PublicBlob\":\"{blob}\"}}}}"),
    );
    assert_eq!(st, 200, "{body}");
    errs.clear();
    validate(
        &doc,
        response_schema(&doc, &format!("{MI}/hybridCertificate"), "post", 200),
        &body,
        "hybridCertificate",
        &mut errs,
    );

    let stc = format!("{MI}/serverTrustCertificates/{{certificateName}}");
    let ec = format!("{MI}/endpointCertificates/{{endpointType}}");
    let dag = format!("{MI}/distributedAvailabilityGroups/{{distributedAvailabilityGroupName}}");
    let p21 = "preview/2021-05-01-preview/examples/";
    let p25 = "preview/2025-08-01-preview/examples/";
    let steps: Vec<Step> = vec![
        (
            "stable/2025-01-01/examples/ManagedInstanceGet.json".into(),
            "get",
            MI.into(),
            None,
        ),
        (
            format!("{p21}ServerTrustCertificatesCreate.json"),
            "put",
            stc.clone(),
            None,
        ),
        (
            format!("{p25}ServerTrustCertificatesCreate.json"),
            "put",
            stc.clone(),
            None,
        ),
        (
            format!("{p25}ServerTrustCertificatesGet.json"),
            "get",
            stc.clone(),
            None,
        ),
        (
            format!("{p25}ServerTrustCertificatesListByInstance.json"),
            "get",
            format!("{MI}/serverTrustCertificates"),
            None,
        ),
        (
            format!("{p25}ServerTrustCertificatesDelete.json"),
            "delete",
            stc.clone(),
            None,
        ),
        (
            format!("{p21}EndpointCertificateGet.json"),
            "get",
            ec.clone(),
            None,
        ),
        (
            format!("{p25}EndpointCertificatesGet.json"),
            "get",
            ec.clone(),
            None,
        ),
        (
            format!("{p25}EndpointCertificatesListByInstance.json"),
            "get",
            format!("{MI}/endpointCertificates"),
            None,
        ),
        (
            format!("{p21}DistributedAvailabilityGroupsCreate.json"),
            "put",
            dag.clone(),
            None,
        ),
        (
            format!("{p21}DistributedAvailabilityGroupsGet.json"),
            "get",
            dag.clone(),
            None,
        ),
        (
            format!("{p21}DistributedAvailabilityGroupsUpdate.json"),
            "patch",
            dag.clone(),
            None,
        ),
        (
            format!("{p21}DistributedAvailabilityGroupsDelete.json"),
            "delete",
            dag.clone(),
            None,
        ),
        (
            format!("{p25}DistributedAvailabilityGroupsCreateMin.json"),
            "put",
            dag.clone(),
            None,
        ),
        (
            format!("{p25}DistributedAvailabilityGroupsGet.json"),
            "get",
            dag.clone(),
            None,
        ),
        (
            format!("{p25}DistributedAvailabilityGroupsListByInstance.json"),
            "get",
            format!("{MI}/distributedAvailabilityGroups"),
            None,
        ),
        (
            format!("{p25}DistributedAvailabilityGroupsUpdate.json"),
            "patch",
            dag.clone(),
            None,
        ),
        (
            format!("{p25}DistributedAvailabilityGroupsFailover.json"),
            "post",
            format!("{dag}/failover"),
            None,
        ),
        // The managed instance as the link's initial primary is not built yet.
        (
            format!("{p25}DistributedAvailabilityGroupsCreateMax.json"),
            "put",
            dag.clone(),
            Some((
                400,
                "InvalidDistributedAvailabilityGroupsCreateOrUpdateRequest",
            )),
        ),
        (
            format!("{p25}DistributedAvailabilityGroupsDelete.json"),
            "delete",
            dag.clone(),
            None,
        ),
    ];
    for (file, method, template, refusal) in steps {
        let ex: Value =
            serde_json::from_str(&std::fs::read_to_string(spec.join(&file)).unwrap()).unwrap();
        let p = &ex["parameters"];
        let mut path = template.clone();
        for (k, v) in p.as_object().unwrap() {
            let v = match k.as_str() {
                "subscriptionId" => SUB,
                "resourceGroupName" => "testrg",
                "managedInstanceName" => "testcl",
                _ => v.as_str().unwrap_or(""),
            };
            path = path.replace(&format!("{{{k}}}"), v);
        }
        let version = served_version(p["api-version"].as_str().unwrap());
        let mut body = p.get("parameters").cloned().unwrap_or(Value::Null);
        if body["properties"].get("publicBlob").is_some() {
            body["properties"]["publicBlob"] = Value::String(blob.clone());
        }
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let (st, _, resp) = http(
            port,
            &method.to_uppercase(),
            &format!("{path}?api-version={version}"),
            Some(TOKEN),
            &body,
        );
        match refusal {
            Some((status, code)) => {
                assert_eq!(
                    (st, resp["error"]["code"].as_str()),
                    (status, Some(code)),
                    "{file}: {resp}"
                );
            }
            None => {
                let listed: Vec<&String> = ex["responses"].as_object().unwrap().keys().collect();
                assert!(
                    listed.contains(&&st.to_string()),
                    "{file}: {st} not in {listed:?}: {resp}"
                );
            }
        }
        if !resp.is_null() {
            let schema = response_schema(&doc, &template, method, st);
            validate(&doc, schema, &resp, &file, &mut errs);
        }
    }
    assert!(errs.is_empty(), "schema violations:\n{}", errs.join("\n"));
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
}
