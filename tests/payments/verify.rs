//! `miliki ledger verify` over a ledger with payments, a reversal and late
//! fees, then over one whose stored figures were tampered with.

use serde_json::json;

use crate::common::*;
use crate::support::*;

#[tokio::test]
async fn ledger_verify_passes_then_finds_the_first_difference() {
    let app = spawn().await;
    let mut admin = app.admin().await;
    let customer = app.customer().await;
    let p = create_product(&app, &admin, boda_product()).await;
    let c = create_contract(
        &app,
        &admin,
        contract_body(&p, customer.id, 165_000_00, 33_000_00, 78),
    )
    .await;
    let id = c["id"].as_str().unwrap().to_owned();
    let (_, r) = pay(&app, &admin.token, &id, deposit_due(&c) + 1_000_00).await;
    let pid = r["payment"]["id"].as_str().unwrap().to_owned();
    pay(&app, &admin.token, &id, 700_00).await;
    advance_days(&app, 12, &mut [&mut admin]).await;
    app.eventually("late fees", || async {
        let d = contract(&app, &admin.token, &id).await;
        (d["balances"]["outstanding_penalties_minor"] == 500_00).then_some(())
    })
    .await;
    let (status, _, _) = post_idem(
        &app,
        &format!("/api/v1/payments/{pid}/reverse"),
        &admin.token,
        Some(&key()),
        json!({"reason": "bounced"}),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::OK);

    let db = app.runtime().deps("payments").unwrap().db.clone();
    let report = miliki_payments::verify::verify(&db).await.unwrap();
    assert!(report.difference.is_none(), "{:?}", report.difference);
    assert!(report.transactions >= 6, "{report:?}");
    assert_eq!(report.contracts, 1);

    // Through the CLI, on the same data directory (SQLite only).
    let cli = |dir: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_miliki"))
            .args(["--data-dir", dir.to_str().unwrap(), "ledger", "verify"])
            .output()
            .expect("run miliki")
    };
    if postgres_url().is_none() {
        let out = cli(app.dir.path());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("ledger verified"));
    }

    // A stored figure that no longer matches the journal is found.
    sqlx::query("UPDATE installments SET principal_paid = principal_paid + 1 WHERE contract_id = $1 AND number = 0")
        .bind(&id)
        .execute(db.writer())
        .await
        .unwrap();
    let report = miliki_payments::verify::verify(&db).await.unwrap();
    let diff = report.difference.expect("a difference");
    assert!(diff.contains("receivable:deposit"), "{diff}");
    if postgres_url().is_none() {
        let out = cli(app.dir.path());
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("receivable:deposit"));
    }
    app.stop().await;
}
