//! `miliki ledger verify`: every journal transaction balances, and every
//! contract's stored figures equal what its ledger says.

use std::collections::HashMap;

use miliki_platform::db::Db;
use sqlx::Row;

use crate::domain::product::Component;
use crate::store;

/// What verification found.
#[derive(Debug, Default)]
pub struct Report {
    pub transactions: u64,
    pub contracts: u64,
    /// The first difference, if any.
    pub difference: Option<String>,
}

/// Checks the whole ledger, stopping at the first difference.
pub async fn verify(db: &Db) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let unbalanced = sqlx::query(
        "SELECT transaction_id, CAST(SUM(amount_minor) AS BIGINT) AS total FROM journal_entries \
         GROUP BY transaction_id HAVING SUM(amount_minor) <> 0 ORDER BY transaction_id LIMIT 1",
    )
    .fetch_optional(db.reader())
    .await?;
    report.transactions = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM journal_transactions")
        .fetch_one(db.reader())
        .await? as u64;
    if let Some(row) = unbalanced {
        let id: String = row.try_get("transaction_id")?;
        let total: i64 = row.try_get("total")?;
        report.difference = Some(format!(
            "transaction {id} does not balance: debits − credits = {total}"
        ));
        return Ok(report);
    }
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM contracts ORDER BY id")
        .fetch_all(db.reader())
        .await?;
    for id in ids {
        report.contracts += 1;
        let uuid = miliki_platform::id::parse_stored(&id)?;
        let mut conn = db.reader().acquire().await?;
        let Some(c) = store::find_contract(&mut conn, uuid, "").await? else {
            continue;
        };
        let book = store::load_book(&mut conn, &c).await?;
        let rows = sqlx::query(
            "SELECT account, installment, CAST(SUM(amount_minor) AS BIGINT) AS total FROM journal_entries \
             WHERE contract_id = $1 GROUP BY account, installment",
        )
        .bind(&id)
        .fetch_all(&mut *conn)
        .await?;
        let mut by_account: HashMap<String, i64> = HashMap::new();
        let mut by_line: HashMap<(String, i64), i64> = HashMap::new();
        for r in rows {
            let account: String = r.try_get("account")?;
            let installment: Option<i64> = r.try_get("installment")?;
            let total: i64 = r.try_get("total")?;
            *by_account.entry(account.clone()).or_default() += total;
            if let Some(n) = installment {
                *by_line.entry((account, n)).or_default() += total;
            }
        }
        let ledger = |a: &str| by_account.get(a).copied().unwrap_or(0);
        let deposit = book
            .lines
            .first()
            .map(|l| l.outstanding(Component::Principal))
            .unwrap_or(0);
        let checks = [
            ("receivable:deposit", deposit),
            (
                "receivable:principal",
                book.outstanding_of(Component::Principal) - deposit,
            ),
            (
                "receivable:interest",
                book.outstanding_of(Component::Interest),
            ),
            ("receivable:fees", book.outstanding_of(Component::Fees)),
            (
                "receivable:penalties",
                book.outstanding_of(Component::Penalties),
            ),
            ("customer_credit", -book.credit_minor),
            (
                "unearned_interest",
                -book.outstanding_of(Component::Interest),
            ),
        ];
        for (account, expected) in checks {
            if ledger(account) != expected {
                report.difference = Some(format!(
                    "contract {} ({}): {account} is {} in the ledger but {expected} in the contract",
                    c.account_number,
                    c.id,
                    ledger(account)
                ));
                return Ok(report);
            }
        }
        // Per installment: what the ledger says is still owed on each line.
        for line in &book.lines {
            for comp in [
                Component::Penalties,
                Component::Fees,
                Component::Interest,
                Component::Principal,
            ] {
                let account = crate::domain::book::Account::receivable(comp, line.number).code();
                let owed = by_line
                    .get(&(account.clone(), i64::from(line.number)))
                    .copied()
                    .unwrap_or(0);
                if owed != line.outstanding(comp) {
                    report.difference = Some(format!(
                        "contract {} ({}): installment {} {comp} is {owed} owed in the ledger but {} in the schedule",
                        c.account_number,
                        c.id,
                        line.number,
                        line.outstanding(comp)
                    ));
                    return Ok(report);
                }
            }
        }
    }
    Ok(report)
}
