//! Golden schedules: figures worked by hand (and by an independent decimal
//! calculation) from the rules in the README, pinned so a change to the
//! maths cannot pass unnoticed.

use chrono::NaiveDate;
use miliki_payments::domain::schedule::{compute, Amortization, Frequency, InterestMethod, Terms};

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn terms(
    p: i64,
    bps: u32,
    n: u32,
    f: Frequency,
    method: InterestMethod,
    am: Amortization,
    q: i64,
) -> Terms {
    Terms {
        principal_minor: p,
        annual_rate_bps: bps,
        periods: n,
        frequency: f,
        method,
        amortization: am,
        rounding_minor: q,
    }
}

/// (principal, interest, total, balance after) of installment `k` (1-based).
fn row(s: &miliki_payments::domain::schedule::Schedule, k: usize) -> (i64, i64, i64, i64) {
    let i = &s.installments[k - 1];
    (
        i.principal_minor,
        i.interest_minor,
        i.total_minor,
        i.balance_after_minor,
    )
}

#[test]
fn flat_weekly_boda_boda() {
    // KES 165,000 bike, 20% deposit: P = 132,000.00; 30% flat a year over 78 weeks.
    // I = 13,200,000 × 0.30 × 78 / 52 = 5,940,000.
    // T = multiple of 100 of 19,140,000 / 78 = 245,384.6 → 245,400.
    // interest_k = round(5,940,000 / 78 = 76,153.85) = 76,154; principal_k = 169,246.
    let s = compute(
        &terms(
            13_200_000,
            3000,
            78,
            Frequency::Weekly,
            InterestMethod::Flat,
            Amortization::EqualInstallments,
            100,
        ),
        date(2026, 3, 2),
    )
    .unwrap();
    assert_eq!(s.total_interest_minor, 5_940_000);
    assert_eq!(s.installment_minor, 245_400);
    assert_eq!(row(&s, 1), (169_246, 76_154, 245_400, 13_030_754));
    // The last takes what is left: P − 77 × 169,246 and I − 77 × 76,154.
    assert_eq!(row(&s, 78), (168_058, 76_142, 244_200, 0));
    assert_eq!(s.installments[0].due_date, date(2026, 3, 9));
    assert_eq!(s.installments[77].due_date, date(2027, 8, 30));
}

#[test]
fn declining_equal_installments_monthly_car() {
    // P = KES 1,000,000.00 at 18% a year over 36 months: r = 0.015,
    // A = P·r / (1 − 1.015^−36) = 3,615,239.96… → 3,615,200 (whole shillings).
    let s = compute(
        &terms(
            100_000_000,
            1800,
            36,
            Frequency::Monthly,
            InterestMethod::DecliningBalance,
            Amortization::EqualInstallments,
            100,
        ),
        date(2026, 1, 31),
    )
    .unwrap();
    assert_eq!(s.installment_minor, 3_615_200);
    assert_eq!(row(&s, 1), (2_115_200, 1_500_000, 3_615_200, 97_884_800));
    assert_eq!(row(&s, 2), (2_146_928, 1_468_272, 3_615_200, 95_737_872));
    assert_eq!(row(&s, 36), (3_563_616, 53_454, 3_617_070, 0));
    assert_eq!(s.total_interest_minor, 30_149_070);
    // Month ends clamp, counted from the start each time.
    assert_eq!(s.installments[0].due_date, date(2026, 2, 28));
    assert_eq!(s.installments[1].due_date, date(2026, 3, 31));
    assert_eq!(s.installments[2].due_date, date(2026, 4, 30));
    assert_eq!(s.installments[24].due_date, date(2028, 2, 29));
}

#[test]
fn declining_equal_principal_monthly_truck() {
    // P = KES 5,000,000.00 at 15% over 24 months: principal 20,833,333.3 → 20,833,300.
    let s = compute(
        &terms(
            500_000_000,
            1500,
            24,
            Frequency::Monthly,
            InterestMethod::DecliningBalance,
            Amortization::EqualPrincipal,
            100,
        ),
        date(2026, 3, 2),
    )
    .unwrap();
    assert_eq!(row(&s, 1), (20_833_300, 6_250_000, 27_083_300, 479_166_700));
    assert_eq!(row(&s, 24), (20_834_100, 260_426, 21_094_526, 0));
    assert_eq!(s.total_interest_minor, 78_125_115);
    assert_eq!(s.installment_minor, 27_083_300);
}

#[test]
fn declining_daily_plan() {
    // P = KES 360,000.00 at 24% over 365 days.
    let s = compute(
        &terms(
            36_000_000,
            2400,
            365,
            Frequency::Daily,
            InterestMethod::DecliningBalance,
            Amortization::EqualInstallments,
            100,
        ),
        date(2026, 3, 2),
    )
    .unwrap();
    assert_eq!(s.installment_minor, 111_000);
    assert_eq!(row(&s, 1), (87_329, 23_671, 111_000, 35_912_671));
    assert_eq!(row(&s, 365), (98_972, 65, 99_037, 0));
    assert_eq!(s.total_interest_minor, 4_503_037);
    assert_eq!(s.installments[364].due_date, date(2027, 3, 2));
}

#[test]
fn zero_rate_is_principal_over_n() {
    let s = compute(
        &terms(
            1_200_000,
            0,
            12,
            Frequency::Monthly,
            InterestMethod::DecliningBalance,
            Amortization::EqualInstallments,
            100,
        ),
        date(2026, 3, 2),
    )
    .unwrap();
    assert!(s
        .installments
        .iter()
        .all(|i| i.total_minor == 100_000 && i.interest_minor == 0));
}

#[test]
fn ties_round_half_even() {
    // P = 1,000 at 10% flat over 2 months: I = round(16.67) = 17;
    // (P + I) / n = 508.5 → 508 (even); I / n = 8.5 → 8 (even).
    let s = compute(
        &terms(
            1_000,
            1000,
            2,
            Frequency::Monthly,
            InterestMethod::Flat,
            Amortization::EqualInstallments,
            1,
        ),
        date(2026, 3, 2),
    )
    .unwrap();
    assert_eq!(s.total_interest_minor, 17);
    assert_eq!(row(&s, 1), (500, 8, 508, 500));
    assert_eq!(row(&s, 2), (500, 9, 509, 0));
}
