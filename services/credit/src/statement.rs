//! M-Pesa statements exported as CSV (Receipt No., Completion Time, Details,
//! Transaction Status, Paid In, Withdrawn, Balance), parsed strictly: a
//! malformed file is refused with the line and column of each fault.

use std::collections::BTreeSet;

use chrono::{NaiveDate, NaiveDateTime};
use miliki_platform::problem::FieldError;
use miliki_platform::ApiError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The largest statement accepted.
pub const MAX_BYTES: usize = 2 * 1024 * 1024;
pub const MAX_ROWS: usize = 20_000;
/// How many faults a refusal lists.
const MAX_ERRORS: usize = 20;
/// The window the statement features look at, ending with its last day.
pub const WINDOW_WEEKS: i64 = 13;

const COLUMNS: [&str; 7] = [
    "Receipt No.",
    "Completion Time",
    "Details",
    "Transaction Status",
    "Paid In",
    "Withdrawn",
    "Balance",
];

/// Words in a counterparty that mark a betting operator.
const BETTING: &[&str] = &[
    "sportpesa",
    "betika",
    "odibets",
    "mozzart",
    "betin",
    "1xbet",
    "betway",
    "shabiki",
    "mcheza",
    "betpawa",
    "22bet",
    "helabet",
    "bangbet",
    "kwikbet",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub receipt: String,
    pub at: NaiveDateTime,
    pub details: String,
    pub completed: bool,
    pub failed: bool,
    pub paid_in_minor: i64,
    pub withdrawn_minor: i64,
    pub balance_minor: i64,
}

/// What the scorecard takes from a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatementSummary {
    pub transactions: i64,
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
    /// Weeks the features look at (at most 13, fewer for a shorter statement).
    pub weeks: i64,
    pub weeks_with_income: i64,
    pub inflow_minor: i64,
    pub outflow_minor: i64,
    pub monthly_inflow_minor: i64,
    pub avg_balance_minor: i64,
    pub distinct_payers: i64,
    pub betting_outflow_minor: i64,
    pub failed_transactions: i64,
}

fn fault(errors: &mut Vec<FieldError>, line: u64, column: Option<usize>, message: String) {
    if errors.len() < MAX_ERRORS {
        let at = match column {
            Some(c) => format!("line {line}, column {} ({})", c + 1, COLUMNS[c]),
            None => format!("line {line}"),
        };
        errors.push(FieldError::new("statement", format!("{at}: {message}")));
    }
}

/// An amount such as `1,200.50`, `-500.00` or `` (nothing), in minor units.
/// The sign is dropped: M-Pesa writes withdrawals both ways.
pub fn parse_amount(raw: &str) -> Result<i64, String> {
    let s = raw.trim().replace(',', "");
    let s = s.strip_prefix("KES").unwrap_or(&s).trim();
    if s.is_empty() {
        return Ok(0);
    }
    let s = s.strip_prefix('-').unwrap_or(s);
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, f),
        None => (s, ""),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !(frac.is_empty() || (digits(frac) && frac.len() <= 2)) || whole.len() > 13
    {
        return Err(format!("{raw:?} is not an amount"));
    }
    let whole: i64 = whole
        .parse()
        .map_err(|_| format!("{raw:?} is not an amount"))?;
    let cents: i64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<i64>().unwrap_or(0) * 10,
        _ => frac.parse::<i64>().unwrap_or(0),
    };
    Ok(whole * 100 + cents)
}

fn parse_time(raw: &str) -> Result<NaiveDateTime, String> {
    let s = raw.trim();
    for format in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%d/%m/%Y %H:%M:%S",
        "%d/%m/%Y %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Ok(t);
        }
    }
    Err(format!(
        "{s:?} is not a time like 2026-02-27 18:22:05 or 27/02/2026 18:22:05"
    ))
}

/// Parses a statement; every fault is named by line and column.
pub fn parse(bytes: &[u8]) -> Result<Vec<Transaction>, ApiError> {
    if bytes.len() > MAX_BYTES {
        return Err(ApiError::PayloadTooLarge(format!(
            "the statement is larger than {} MB",
            MAX_BYTES / 1024 / 1024
        )));
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut errors = Vec::new();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut records = reader.byte_records();
    let header = match records.next() {
        Some(Ok(h)) => h,
        Some(Err(e)) => {
            return Err(ApiError::Validation(vec![FieldError::new(
                "statement",
                format!("line 1: {e}"),
            )]))
        }
        None => return Err(ApiError::field("statement", "the statement is empty")),
    };
    let names: Vec<String> = header
        .iter()
        .map(|c| String::from_utf8_lossy(c).trim().to_ascii_lowercase())
        .collect();
    let mut index = [0usize; 7];
    for (i, wanted) in COLUMNS.iter().enumerate() {
        match names.iter().position(|n| n == &wanted.to_ascii_lowercase()) {
            Some(at) => index[i] = at,
            None => fault(
                &mut errors,
                1,
                None,
                format!(
                    "the header has no {wanted:?} column (an M-Pesa statement has {})",
                    COLUMNS.join(", ")
                ),
            ),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let mut out = Vec::new();
    let mut receipts = BTreeSet::new();
    for record in records {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                fault(&mut errors, line, None, "unreadable CSV".into());
                break;
            }
        };
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        if record.iter().all(|c| c.iter().all(u8::is_ascii_whitespace)) {
            continue;
        }
        if out.len() >= MAX_ROWS {
            fault(
                &mut errors,
                line,
                None,
                format!("more than {MAX_ROWS} transactions"),
            );
            break;
        }
        if record.len() < names.len() {
            fault(
                &mut errors,
                line,
                None,
                format!(
                    "{} cells where the header has {}",
                    record.len(),
                    names.len()
                ),
            );
            continue;
        }
        let mut cell = |c: usize| -> Option<String> {
            match std::str::from_utf8(&record[index[c]]) {
                Ok(s) if s.chars().any(|ch| ch.is_control() && ch != '\t') => {
                    fault(&mut errors, line, Some(c), "control characters".into());
                    None
                }
                Ok(s) => Some(s.trim().to_owned()),
                Err(_) => {
                    fault(&mut errors, line, Some(c), "not UTF-8 text".into());
                    None
                }
            }
        };
        let (receipt, time, details, status, paid_in, withdrawn, balance) = (
            cell(0),
            cell(1),
            cell(2),
            cell(3),
            cell(4),
            cell(5),
            cell(6),
        );
        let mut ok = true;
        let receipt = receipt.unwrap_or_default();
        if receipt.is_empty()
            || receipt.len() > 20
            || !receipt.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            fault(
                &mut errors,
                line,
                Some(0),
                format!("{receipt:?} is not a receipt number"),
            );
            ok = false;
        } else if !receipts.insert(receipt.clone()) {
            fault(
                &mut errors,
                line,
                Some(0),
                format!("receipt {receipt} appears twice"),
            );
            ok = false;
        }
        let at = match time.as_deref().map(parse_time) {
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                fault(&mut errors, line, Some(1), e);
                None
            }
            None => None,
        };
        let status_text = status.unwrap_or_default().to_ascii_lowercase();
        let (completed, failed) = match status_text.as_str() {
            "completed" | "success" | "successful" => (true, false),
            "failed" | "reversed" | "cancelled" | "declined" => (false, true),
            other => {
                fault(
                    &mut errors,
                    line,
                    Some(3),
                    format!("{other:?} is not a status (Completed, Failed, Reversed, Cancelled)"),
                );
                ok = false;
                (false, false)
            }
        };
        let mut amount = |c: usize, raw: Option<String>| -> i64 {
            match parse_amount(raw.as_deref().unwrap_or("")) {
                Ok(a) => a,
                Err(e) => {
                    fault(&mut errors, line, Some(c), e);
                    ok = false;
                    0
                }
            }
        };
        let paid_in_minor = amount(4, paid_in);
        let withdrawn_minor = amount(5, withdrawn);
        let balance_minor = amount(6, balance);
        if ok && paid_in_minor > 0 && withdrawn_minor > 0 {
            fault(
                &mut errors,
                line,
                Some(5),
                "a transaction is paid in or withdrawn, not both".into(),
            );
        }
        if let (true, Some(at)) = (ok, at) {
            out.push(Transaction {
                receipt,
                at,
                details: details.unwrap_or_default(),
                completed,
                failed: failed || status_text == "reversed",
                paid_in_minor,
                withdrawn_minor,
                balance_minor,
            });
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    if out.is_empty() {
        return Err(ApiError::field(
            "statement",
            "the statement has no transactions",
        ));
    }
    Ok(out)
}

/// The payer of an inflow, from its details: `Funds received from 0712… - JANE W`.
fn payer(details: &str) -> Option<String> {
    let lower = details.to_ascii_lowercase();
    let at = lower.find(" from ")?;
    let who = lower[at + 6..].trim();
    (!who.is_empty()).then(|| who.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn is_betting(details: &str) -> bool {
    let lower = details.to_ascii_lowercase();
    BETTING.iter().any(|b| lower.contains(b))
}

/// The statement features, over the last [`WINDOW_WEEKS`] weeks it covers.
pub fn summarize(transactions: &[Transaction]) -> Option<StatementSummary> {
    let last = transactions.iter().map(|t| t.at.date()).max()?;
    let first_all = transactions.iter().map(|t| t.at.date()).min()?;
    let window_start = (last - chrono::Duration::days(WINDOW_WEEKS * 7 - 1)).max(first_all);
    let days = (last - window_start).num_days() + 1;
    let weeks = ((days + 6) / 7).clamp(1, WINDOW_WEEKS);
    let in_window: Vec<&Transaction> = transactions
        .iter()
        .filter(|t| t.at.date() >= window_start)
        .collect();
    let mut income_weeks = BTreeSet::new();
    let mut payers = BTreeSet::new();
    let (mut inflow, mut outflow, mut betting, mut failed) = (0i64, 0i64, 0i64, 0i64);
    let (mut balance_sum, mut balance_n) = (0i128, 0i128);
    for t in &in_window {
        if t.failed || t.details.to_ascii_lowercase().contains("reversal") {
            failed += 1;
        }
        if !t.completed {
            continue;
        }
        balance_sum += i128::from(t.balance_minor);
        balance_n += 1;
        if t.paid_in_minor > 0 && !t.details.to_ascii_lowercase().contains("reversal") {
            inflow = inflow.saturating_add(t.paid_in_minor);
            income_weeks.insert((last - t.at.date()).num_days() / 7);
            if let Some(p) = payer(&t.details) {
                payers.insert(p);
            }
        }
        if t.withdrawn_minor > 0 {
            outflow = outflow.saturating_add(t.withdrawn_minor);
            if is_betting(&t.details) {
                betting = betting.saturating_add(t.withdrawn_minor);
            }
        }
    }
    // Monthly: the window's inflow over its days, times 365/12 days.
    let monthly = (i128::from(inflow) * 365 / (12 * i128::from(days))) as i64;
    Some(StatementSummary {
        transactions: in_window.len() as i64,
        first_day: window_start,
        last_day: last,
        weeks,
        weeks_with_income: income_weeks.len() as i64,
        inflow_minor: inflow,
        outflow_minor: outflow,
        monthly_inflow_minor: monthly,
        avg_balance_minor: if balance_n > 0 {
            (balance_sum / balance_n) as i64
        } else {
            0
        },
        distinct_payers: payers.len() as i64,
        betting_outflow_minor: betting,
        failed_transactions: failed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn amounts_are_exact() {
        assert_eq!(parse_amount("1,200.50"), Ok(120_050));
        assert_eq!(parse_amount("-500.00"), Ok(50_000));
        assert_eq!(parse_amount("7.5"), Ok(750));
        assert_eq!(parse_amount(""), Ok(0));
        assert!(parse_amount("12.345").is_err());
        assert!(parse_amount("abc").is_err());
        assert!(parse_amount("1e5").is_err());
    }

    proptest! {
        #[test]
        fn amounts_round_trip(minor in 0i64..1_000_000_000_000) {
            let text = format!("{}.{:02}", minor / 100, minor % 100);
            prop_assert_eq!(parse_amount(&text), Ok(minor));
        }
    }
}
