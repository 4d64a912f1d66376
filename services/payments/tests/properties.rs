//! Property tests of the money rules. Cases per property: proptest's
//! `PROPTEST_CASES` (CI sets 10000; the default run keeps 256 to stay quick).

use std::collections::HashMap;

use chrono::{Days, NaiveDate};
use miliki_payments::domain::book::{Account, Book, Posting};
use miliki_payments::domain::product::{Component, LateFee, LateFeeRule, DEFAULT_ALLOCATION};
use miliki_payments::domain::schedule::{
    compute, Amortization, Frequency, InterestMethod, Schedule, Terms,
};
use proptest::prelude::*;

fn start() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 31).unwrap()
}

fn arb_terms() -> impl Strategy<Value = Terms> {
    (
        1_000i64..2_000_000_000,
        0u32..6000,
        1u32..120,
        prop_oneof![
            Just(Frequency::Daily),
            Just(Frequency::Weekly),
            Just(Frequency::Monthly)
        ],
        prop_oneof![
            Just((InterestMethod::Flat, Amortization::EqualInstallments)),
            Just((
                InterestMethod::DecliningBalance,
                Amortization::EqualInstallments
            )),
            Just((
                InterestMethod::DecliningBalance,
                Amortization::EqualPrincipal
            )),
        ],
        prop_oneof![Just(1i64), Just(100), Just(500)],
    )
        .prop_map(|(p, bps, n, f, (method, amortization), q)| Terms {
            principal_minor: p,
            annual_rate_bps: bps,
            periods: n,
            frequency: f,
            method,
            amortization,
            rounding_minor: q,
        })
}

proptest! {
    /// Installments sum exactly to the principal and the total interest;
    /// balances fall to zero; regular totals are multiples of the rounding.
    #[test]
    fn schedules_sum_exactly(t in arb_terms()) {
        match compute(&t, start()) {
            Ok(s) => {
                prop_assert_eq!(s.installments.len(), t.periods as usize);
                prop_assert_eq!(s.installments.iter().map(|i| i.principal_minor).sum::<i64>(), t.principal_minor);
                prop_assert_eq!(s.installments.iter().map(|i| i.interest_minor).sum::<i64>(), s.total_interest_minor);
                prop_assert_eq!(s.installments.last().map(|i| i.balance_after_minor), Some(0));
                let mut balance = t.principal_minor;
                for i in &s.installments {
                    prop_assert!(i.principal_minor >= 0 && i.interest_minor >= 0);
                    prop_assert_eq!(i.total_minor, i.principal_minor + i.interest_minor);
                    balance -= i.principal_minor;
                    prop_assert_eq!(i.balance_after_minor, balance);
                }
                let regular = &s.installments[..s.installments.len() - 1];
                match t.amortization {
                    Amortization::EqualPrincipal if t.method == InterestMethod::DecliningBalance => {
                        prop_assert!(regular.iter().all(|i| i.principal_minor % t.rounding_minor == 0));
                    }
                    _ => prop_assert!(regular.iter().all(|i| i.total_minor == s.installment_minor && i.total_minor % t.rounding_minor == 0)),
                }
                // Due dates strictly increase.
                prop_assert!(s.installments.windows(2).all(|w| w[0].due_date < w[1].due_date));
            }
            // Refused only when rounding to the multiple could not repay the principal.
            Err(e) => prop_assert!(
                matches!(e, miliki_payments::domain::schedule::ScheduleError::RoundingOvershoot { .. }),
                "unexpected {e:?}"
            ),
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Pay(i64),
    Reverse(usize),
    Advance(u64),
    LateFees,
    Pause(u64),
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1i64..3_000_000).prop_map(Op::Pay),
        2 => (1i64..100).prop_map(Op::Pay),
        2 => any::<prop::sample::Index>().prop_map(|i| Op::Reverse(i.index(1000))),
        3 => (1u64..40).prop_map(Op::Advance),
        2 => Just(Op::LateFees),
        1 => (1u64..30).prop_map(Op::Pause),
    ]
}

fn realistic_terms() -> impl Strategy<Value = Terms> {
    (
        500_000i64..50_000_000,
        0u32..4000,
        1u32..40,
        prop_oneof![Just(Frequency::Weekly), Just(Frequency::Monthly)],
        prop_oneof![
            Just((InterestMethod::Flat, Amortization::EqualInstallments)),
            Just((
                InterestMethod::DecliningBalance,
                Amortization::EqualInstallments
            )),
            Just((
                InterestMethod::DecliningBalance,
                Amortization::EqualPrincipal
            )),
        ],
    )
        .prop_map(|(p, bps, n, f, (method, amortization))| Terms {
            principal_minor: p,
            annual_rate_bps: bps,
            periods: n,
            frequency: f,
            method,
            amortization,
            rounding_minor: 100,
        })
}

/// The ledger as the journal says it: per account, the sum of its entries.
#[derive(Default)]
struct Ledger(HashMap<String, i64>);

impl Ledger {
    fn post(&mut self, postings: &[Posting]) -> Result<(), TestCaseError> {
        for p in postings {
            prop_assert_eq!(p.imbalance(), 0, "unbalanced {:?}", p);
            for e in &p.entries {
                *self.0.entry(e.account.code()).or_default() += e.amount_minor;
            }
        }
        Ok(())
    }

    fn get(&self, a: Account) -> i64 {
        self.0.get(&a.code()).copied().unwrap_or(0)
    }
}

/// The book's own figures agree with the journal's, and nothing is negative.
fn check(book: &Book, ledger: &Ledger, received: i64) -> Result<(), TestCaseError> {
    prop_assert!(
        book.credit_minor >= 0,
        "negative credit {}",
        book.credit_minor
    );
    for l in &book.lines {
        for i in 0..4 {
            prop_assert!(l.paid[i] >= 0 && l.waived[i] >= 0);
            prop_assert!(
                l.paid[i] + l.waived[i] <= l.due[i],
                "over-applied line {:?}",
                l
            );
        }
    }
    let deposit: i64 = book.lines[0].outstanding(Component::Principal);
    let principal: i64 = book.lines[1..]
        .iter()
        .map(|l| l.outstanding(Component::Principal))
        .sum();
    prop_assert_eq!(ledger.get(Account::DepositReceivable), deposit);
    prop_assert_eq!(ledger.get(Account::PrincipalReceivable), principal);
    prop_assert_eq!(
        ledger.get(Account::InterestReceivable),
        book.outstanding_of(Component::Interest)
    );
    prop_assert_eq!(
        ledger.get(Account::FeesReceivable),
        book.outstanding_of(Component::Fees)
    );
    prop_assert_eq!(
        ledger.get(Account::PenaltiesReceivable),
        book.outstanding_of(Component::Penalties)
    );
    prop_assert_eq!(ledger.get(Account::CustomerCredit), -book.credit_minor);
    prop_assert_eq!(
        ledger.get(Account::UnearnedInterest),
        -book.outstanding_of(Component::Interest)
    );
    // Every shilling received is either applied once or still waiting.
    let applied: i64 = book.lines.iter().map(|l| l.total_paid()).sum();
    prop_assert_eq!(applied + book.credit_minor, received);
    prop_assert_eq!(ledger.get(Account::Clearing("cash".into())), received);
    Ok(())
}

fn originate(t: &Terms) -> Option<(Schedule, Book, Ledger, NaiveDate)> {
    let s = compute(t, start()).ok()?;
    let deposit = t.principal_minor / 5;
    let fee = t.principal_minor / 50;
    let (book, posting) = Book::originate(&s, deposit, fee, start());
    let mut ledger = Ledger::default();
    ledger.post(&[posting]).ok()?;
    Some((s, book, ledger, start()))
}

proptest! {
    /// Random payments, reversals, late fees, pauses and clock moves: the
    /// ledger always balances and agrees with the book, nothing is applied
    /// twice, nothing goes negative.
    #[test]
    fn ledger_stays_balanced(t in realistic_terms(), ops in prop::collection::vec(arb_op(), 1..40)) {
        let Some((_, mut book, mut ledger, mut today)) = originate(&t) else { return Ok(()); };
        let fee = LateFee { rule: LateFeeRule::PercentOfOverdue { rate_bps: 500 }, grace_days: 3 };
        let mut payments: Vec<(i64, bool)> = Vec::new();
        let mut received = 0i64;
        for op in ops {
            match op {
                Op::Pay(a) => {
                    let p = book.receive(a, "cash");
                    ledger.post(&[p])?;
                    received += a;
                    payments.push((a, false));
                }
                Op::Reverse(i) if !payments.is_empty() => {
                    let i = i % payments.len();
                    if !payments[i].1 {
                        payments[i].1 = true;
                        let out = book.reverse(payments[i].0, "cash", &DEFAULT_ALLOCATION);
                        ledger.post(&out.postings)?;
                        received -= payments[i].0;
                    }
                }
                Op::Reverse(_) => {}
                Op::Advance(d) => today = today.checked_add_days(Days::new(d)).unwrap_or(today),
                Op::LateFees => {
                    let out = book.charge_late_fees(today, &fee);
                    ledger.post(&out.postings)?;
                }
                Op::Pause(d) => {
                    book.shift_due_dates(today, d);
                }
            }
            let out = book.allocate(today, true, &DEFAULT_ALLOCATION);
            ledger.post(&out.postings)?;
            check(&book, &ledger, received)?;
        }
        // Charging twice for a day charges nothing more.
        let once = book.charge_late_fees(today, &fee);
        ledger.post(&once.postings)?;
        let twice = book.charge_late_fees(today, &fee);
        prop_assert!(twice.postings.is_empty());
    }

    /// Paying exactly the total payable, in any chunks at any times, ends
    /// with nothing owed and nothing waiting.
    #[test]
    fn paying_the_total_pays_off(t in realistic_terms(), cuts in prop::collection::vec((1u32..1000, 0u64..60), 1..12)) {
        let Some((s, mut book, mut ledger, mut today)) = originate(&t) else { return Ok(()); };
        let total = book.outstanding();
        prop_assert_eq!(total, book.lines[0].total_due() + t.principal_minor + s.total_interest_minor);
        let weights: u32 = cuts.iter().map(|(w, _)| w).sum();
        let mut paid = 0i64;
        for (k, (w, days)) in cuts.iter().enumerate() {
            let amount = if k + 1 == cuts.len() { total - paid } else { total * i64::from(*w) / i64::from(weights) };
            paid += amount;
            today = today.checked_add_days(Days::new(*days)).unwrap_or(today);
            if amount > 0 {
                ledger.post(&[book.receive(amount, "cash")])?;
            }
            let out = book.allocate(today, true, &DEFAULT_ALLOCATION);
            ledger.post(&out.postings)?;
            check(&book, &ledger, paid)?;
        }
        prop_assert_eq!(book.outstanding(), 0);
        prop_assert_eq!(book.credit_minor, 0);
    }

    /// A write-off leaves nothing receivable, and the books still balance.
    #[test]
    fn write_off_clears_receivables(t in realistic_terms(), pay in 0i64..5_000_000) {
        let Some((_, mut book, mut ledger, today)) = originate(&t) else { return Ok(()); };
        if pay > 0 {
            ledger.post(&[book.receive(pay, "cash")])?;
            ledger.post(&book.allocate(today, true, &DEFAULT_ALLOCATION).postings)?;
        }
        let out = book.write_off();
        ledger.post(&out.postings)?;
        prop_assert_eq!(book.outstanding(), 0);
        check(&book, &ledger, pay)?;
    }

    /// A trade-in at any value, after any payments and late fees, either
    /// settles everything (nothing receivable, no credit, unearned interest
    /// gone, the equity exactly value + credit − what was owed, the journal
    /// balanced) or, when the value cannot cover the debt, changes nothing.
    #[test]
    fn a_trade_in_settles_everything_or_nothing(
        t in realistic_terms(),
        pays in prop::collection::vec((0i64..3_000_000, 0u64..40), 0..8),
        value in 0i64..60_000_000,
    ) {
        let Some((_, mut book, mut ledger, mut today)) = originate(&t) else { return Ok(()); };
        let fee = LateFee { rule: LateFeeRule::PercentOfOverdue { rate_bps: 500 }, grace_days: 3 };
        for (amount, days) in pays {
            today = today.checked_add_days(Days::new(days)).unwrap_or(today);
            ledger.post(&book.charge_late_fees(today, &fee).postings)?;
            if amount > 0 {
                ledger.post(&[book.receive(amount, "cash")])?;
            }
            ledger.post(&book.allocate(today, true, &DEFAULT_ALLOCATION).postings)?;
        }
        let owed = book.outstanding() - book.outstanding_of(Component::Interest);
        let credit = book.credit_minor;
        let before = book.clone();
        match book.trade_in(value) {
            None => {
                prop_assert!(value + credit < owed, "refused a covering trade-in");
                prop_assert_eq!(&book, &before);
            }
            Some((out, equity)) => {
                prop_assert_eq!(equity, value + credit - owed);
                prop_assert!(equity >= 0);
                ledger.post(&out.postings)?;
                prop_assert_eq!(book.outstanding(), 0);
                prop_assert_eq!(book.credit_minor, 0);
                for a in [
                    Account::DepositReceivable,
                    Account::PrincipalReceivable,
                    Account::InterestReceivable,
                    Account::FeesReceivable,
                    Account::PenaltiesReceivable,
                    Account::CustomerCredit,
                    Account::UnearnedInterest,
                ] {
                    prop_assert_eq!(ledger.get(a.clone()), 0, "{:?} left", a);
                }
                prop_assert_eq!(ledger.get(Account::VehicleReturns), value);
                prop_assert_eq!(ledger.get(Account::Clearing("trade_in".into())), -equity);
            }
        }
    }
}
