//! The committed CRD on a real API server: it installs, `kubectl explain` reads its schema, the
//! short name and printer columns work, and the server itself refuses what the schema forbids.

use crate::support::envtest::ApiServer;

const HEALTHY_QUEUE: &str = "arn:aws:sqs:us-east-1:222222222222:orders";

#[tokio::test]
async fn the_crd_installs_and_kubectl_explains_it() {
    let Some(server) = ApiServer::shared() else {
        return;
    };
    server.install_crd().await;
    let explain = server
        .kubectl_ok(&["explain", "sqsaccessbinding.spec"], None)
        .await;
    for field in [
        "serviceAccountName",
        "queue",
        "access",
        "actions",
        "vpcEndpointId",
    ] {
        assert!(explain.contains(field), "explain lacks {field}:\n{explain}");
    }
    assert!(
        explain.contains("eks.amazonaws.com/role-arn"),
        "the field docs come through:\n{explain}"
    );
    let status = server
        .kubectl_ok(&["explain", "sqsaccessbinding.status.conditions"], None)
        .await;
    assert!(status.contains("lastTransitionTime"), "{status}");
    let resources = server
        .kubectl_ok(&["api-resources", "--api-group=sqsaccess.io"], None)
        .await;
    assert!(
        resources.contains("sqsaccessbindings") && resources.contains("sqsab"),
        "{resources}"
    );
}

#[tokio::test]
async fn kubectl_get_shows_the_short_name_and_printer_columns() {
    let Some(server) = ApiServer::shared() else {
        return;
    };
    server.install_crd().await;
    let ns = server.namespace("crd").await;
    let binding = format!(
        "apiVersion: sqsaccess.io/v1alpha1\nkind: SqsAccessBinding\nmetadata: {{name: producer-orders, namespace: {ns}}}\nspec: {{serviceAccountName: producer, queue: \"{HEALTHY_QUEUE}\", access: [Send]}}\n"
    );
    server
        .kubectl_ok(&["apply", "-f", "-"], Some(&binding))
        .await;
    // The status as the controller writes it (its own field manager, the status subresource).
    let status = r#"{"apiVersion": "sqsaccess.io/v1alpha1", "kind": "SqsAccessBinding", "status": {"reason": "IdentityPolicyDoesNotAllow", "conditions": [{"type": "Ready", "status": "False", "reason": "IdentityPolicyDoesNotAllow", "message": "m", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}"#;
    server
        .kubectl_ok(
            &[
                "-n",
                &ns,
                "patch",
                "sqsab",
                "producer-orders",
                "--subresource=status",
                "--type=merge",
                "-p",
                status,
            ],
            None,
        )
        .await;
    let table = server.kubectl_ok(&["-n", &ns, "get", "sqsab"], None).await;
    let cells = table_row(&table);
    // Every printer column of the CRD, in its order, after the name.
    let columns: Vec<String> = std::iter::once("NAME".to_string())
        .chain(printer_columns().iter().map(|c| c.to_uppercase()))
        .collect();
    assert_eq!(
        cells.iter().map(|(h, _)| h.clone()).collect::<Vec<_>>(),
        columns,
        "{table}"
    );
    let cell = |h: &str| {
        cells
            .iter()
            .find(|(name, _)| name == h)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(cell("NAME"), Some("producer-orders"), "{table}");
    assert_eq!(cell("READY"), Some("False"), "{table}");
    assert_eq!(
        cell("REASON"),
        Some("IdentityPolicyDoesNotAllow"),
        "{table}"
    );
    assert_eq!(cell("QUEUE"), Some(HEALTHY_QUEUE), "{table}");
    // The category finds it too.
    let by_category = server
        .kubectl_ok(&["-n", &ns, "get", "sqsaccess", "-o", "name"], None)
        .await;
    assert_eq!(
        by_category.trim(),
        "sqsaccessbinding.sqsaccess.io/producer-orders"
    );
}

#[tokio::test]
async fn the_api_server_refuses_what_the_schema_forbids() {
    let Some(server) = ApiServer::shared() else {
        return;
    };
    server.install_crd().await;
    let ns = server.namespace("crd-invalid").await;
    for (spec, expect) in [
        // The CEL rule: at least one access mode or action.
        (
            format!("{{serviceAccountName: producer, queue: \"{HEALTHY_QUEUE}\"}}"),
            "name at least one access mode",
        ),
        (
            format!("{{serviceAccountName: producer, queue: \"{HEALTHY_QUEUE}\", access: [Sned]}}"),
            "Unsupported value: \"Sned\"",
        ),
        (
            format!(
                "{{serviceAccountName: Producer_1, queue: \"{HEALTHY_QUEUE}\", access: [Send]}}"
            ),
            "spec.serviceAccountName",
        ),
    ] {
        let doc = format!(
            "apiVersion: sqsaccess.io/v1alpha1\nkind: SqsAccessBinding\nmetadata: {{name: bad, namespace: {ns}}}\nspec: {spec}\n"
        );
        let out = server.kubectl(&["apply", "-f", "-"], Some(&doc)).await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{spec} was accepted");
        assert!(err.contains(expect), "{spec}: {err}");
    }
}

/// The names of the CRD's printer columns, from `crds/`.
fn printer_columns() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/sqsaccessbinding.yaml"
    ))
    .unwrap();
    let crd: serde_json::Value = sqs_access_operator::yaml::from_str(&text).unwrap();
    crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .expect("printer columns")
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

/// The header and first row of `kubectl get`'s table, as (column, cell) pairs: cells are cut at
/// the header's column starts, so an empty cell stays empty.
fn table_row(table: &str) -> Vec<(String, String)> {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    let row = lines.next().unwrap_or_default();
    let starts: Vec<usize> = header
        .char_indices()
        .filter(|&(i, c)| c != ' ' && (i == 0 || header.as_bytes()[i - 1] == b' '))
        .map(|(i, _)| i)
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(n, &start)| {
            let end = starts.get(n + 1).copied();
            let cut = |s: &str| {
                let e = end.unwrap_or(s.len()).min(s.len());
                s.get(start.min(e)..e)
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            };
            (cut(header), cut(row))
        })
        .collect()
}
