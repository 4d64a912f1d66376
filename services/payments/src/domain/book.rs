//! A contract's book: what each installment owes and has been paid, the
//! customer's waiting credit, and the balanced journal postings every
//! movement of money produces. Pure: the store loads a book, applies an
//! operation and saves the lines and postings it returns, in one transaction.
//!
//! Accounts (debits positive, credits negative; every posting sums to zero):
//! per contract `receivable:{deposit,principal,interest,fees,penalties}`,
//! `customer_credit` (money received and not yet applied) and
//! `unearned_interest` (scheduled interest not yet collected); shared
//! `clearing:<method>`, `vehicle_sales`, `income:{interest,fees,penalties}`
//! and `loss:write_off`.
//!
//! Money received always lands in customer credit first; allocation then
//! moves credit onto what is due, oldest installment first, in the product's
//! order. So a payment, an overpayment waiting for the next due date, and a
//! reversal are the same few postings.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::product::Component;
use super::schedule::Schedule;

/// A ledger account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Account {
    DepositReceivable,
    PrincipalReceivable,
    InterestReceivable,
    FeesReceivable,
    PenaltiesReceivable,
    CustomerCredit,
    UnearnedInterest,
    Clearing(String),
    VehicleSales,
    InterestIncome,
    FeeIncome,
    PenaltyIncome,
    WriteOffLoss,
    /// Vehicles taken back in trade for an upgrade, at their trade-in value.
    VehicleReturns,
}

impl Account {
    pub fn code(&self) -> String {
        match self {
            Account::DepositReceivable => "receivable:deposit".into(),
            Account::PrincipalReceivable => "receivable:principal".into(),
            Account::InterestReceivable => "receivable:interest".into(),
            Account::FeesReceivable => "receivable:fees".into(),
            Account::PenaltiesReceivable => "receivable:penalties".into(),
            Account::CustomerCredit => "customer_credit".into(),
            Account::UnearnedInterest => "unearned_interest".into(),
            Account::Clearing(method) => format!("clearing:{method}"),
            Account::VehicleSales => "vehicle_sales".into(),
            Account::InterestIncome => "income:interest".into(),
            Account::FeeIncome => "income:fees".into(),
            Account::PenaltyIncome => "income:penalties".into(),
            Account::WriteOffLoss => "loss:write_off".into(),
            Account::VehicleReturns => "vehicle_returns".into(),
        }
    }

    /// The receivable a component of installment `number` is owed on
    /// (installment 0's principal is the deposit).
    pub fn receivable(component: Component, number: u32) -> Account {
        match component {
            Component::Principal if number == 0 => Account::DepositReceivable,
            Component::Principal => Account::PrincipalReceivable,
            Component::Interest => Account::InterestReceivable,
            Component::Fees => Account::FeesReceivable,
            Component::Penalties => Account::PenaltiesReceivable,
        }
    }
}

/// One side of a posting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub account: Account,
    /// The installment an amount was owed on or applied to.
    pub installment: Option<u32>,
    /// Debit positive, credit negative.
    pub amount_minor: i64,
}

miliki_platform::string_enum!(
    /// Why a journal transaction exists.
    PostingKind {
        Origination => "origination",
        Payment => "payment",
        Allocation => "allocation",
        LateFee => "late_fee",
        Reversal => "reversal",
        Unallocation => "unallocation",
        Waiver => "waiver",
        WriteOff => "write_off",
        TradeIn => "trade_in",
    }
);

/// One balanced journal transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub kind: PostingKind,
    pub memo: String,
    pub entries: Vec<Entry>,
}

impl Posting {
    fn new(kind: PostingKind, memo: impl Into<String>) -> Self {
        Self {
            kind,
            memo: memo.into(),
            entries: Vec::new(),
        }
    }

    fn push(&mut self, account: Account, installment: Option<u32>, amount_minor: i64) {
        if amount_minor != 0 {
            self.entries.push(Entry {
                account,
                installment,
                amount_minor,
            });
        }
    }

    /// Debits minus credits: zero for every posting this module makes.
    pub fn imbalance(&self) -> i64 {
        self.entries.iter().map(|e| e.amount_minor).sum()
    }
}

/// Per-component amounts, indexed by [`Component::index`].
pub type Amounts = [i64; 4];

/// One installment as the book tracks it. Installment 0 is the deposit and
/// processing fee, due at signing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub number: u32,
    pub due_date: NaiveDate,
    pub due: Amounts,
    pub paid: Amounts,
    /// Written off or waived: no longer owed, never paid.
    pub waived: Amounts,
    /// Whether its one late fee has been charged.
    pub late_fee_charged: bool,
}

impl Line {
    pub fn outstanding(&self, c: Component) -> i64 {
        let i = c.index();
        self.due[i] - self.paid[i] - self.waived[i]
    }

    pub fn total_outstanding(&self) -> i64 {
        (0..4)
            .map(|i| self.due[i] - self.paid[i] - self.waived[i])
            .sum()
    }

    pub fn total_due(&self) -> i64 {
        self.due.iter().sum()
    }

    pub fn total_paid(&self) -> i64 {
        self.paid.iter().sum()
    }

    /// Unpaid and past its due date.
    pub fn is_overdue(&self, today: NaiveDate) -> bool {
        self.total_outstanding() > 0 && self.due_date < today
    }
}

/// A contract's book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Book {
    pub lines: Vec<Line>,
    /// Received and not yet applied.
    pub credit_minor: i64,
}

/// What an operation did to a book.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub postings: Vec<Posting>,
    /// Installments whose amounts changed, by number.
    pub touched: Vec<u32>,
}

impl Outcome {
    fn touch(&mut self, number: u32) {
        if !self.touched.contains(&number) {
            self.touched.push(number);
        }
    }

    fn absorb(&mut self, other: Outcome) {
        self.postings.extend(other.postings);
        for n in other.touched {
            self.touch(n);
        }
    }
}

impl Book {
    /// A new contract's book and its origination posting: the vehicle sold
    /// for `deposit + principal`, the processing fee charged, and the
    /// scheduled interest held as unearned until it is collected.
    pub fn originate(
        schedule: &Schedule,
        deposit_minor: i64,
        processing_fee_minor: i64,
        signed: NaiveDate,
    ) -> (Book, Posting) {
        let mut lines = Vec::with_capacity(schedule.installments.len() + 1);
        lines.push(Line {
            number: 0,
            due_date: signed,
            due: [0, processing_fee_minor, 0, deposit_minor],
            paid: [0; 4],
            waived: [0; 4],
            late_fee_charged: false,
        });
        let mut posting = Posting::new(PostingKind::Origination, "contract signed");
        posting.push(Account::DepositReceivable, Some(0), deposit_minor);
        posting.push(Account::FeesReceivable, Some(0), processing_fee_minor);
        posting.push(Account::FeeIncome, None, -processing_fee_minor);
        let mut principal = 0;
        for i in &schedule.installments {
            lines.push(Line {
                number: i.number,
                due_date: i.due_date,
                due: [0, 0, i.interest_minor, i.principal_minor],
                paid: [0; 4],
                waived: [0; 4],
                late_fee_charged: false,
            });
            posting.push(
                Account::PrincipalReceivable,
                Some(i.number),
                i.principal_minor,
            );
            posting.push(
                Account::InterestReceivable,
                Some(i.number),
                i.interest_minor,
            );
            posting.push(Account::UnearnedInterest, Some(i.number), -i.interest_minor);
            principal += i.principal_minor;
        }
        posting.push(Account::VehicleSales, None, -(deposit_minor + principal));
        (
            Book {
                lines,
                credit_minor: 0,
            },
            posting,
        )
    }

    /// Everything still owed, over all installments.
    pub fn outstanding(&self) -> i64 {
        self.lines.iter().map(Line::total_outstanding).sum()
    }

    /// Outstanding amount of one component over all installments (installment
    /// 0's principal, the deposit, counts as principal).
    pub fn outstanding_of(&self, c: Component) -> i64 {
        self.lines.iter().map(|l| l.outstanding(c)).sum()
    }

    /// Whether the deposit and processing fee are fully paid.
    pub fn deposit_paid(&self) -> bool {
        self.lines
            .first()
            .is_some_and(|l| l.total_outstanding() == 0)
    }

    /// The oldest installment unpaid past its due date.
    pub fn oldest_overdue(&self, today: NaiveDate) -> Option<&Line> {
        self.lines.iter().find(|l| l.is_overdue(today))
    }

    /// Days since the oldest unpaid installment fell due (0 when none is late).
    pub fn days_past_due(&self, today: NaiveDate) -> i64 {
        self.oldest_overdue(today)
            .map(|l| (today - l.due_date).num_days())
            .unwrap_or(0)
    }

    /// Unpaid amounts of installments past their due date.
    pub fn overdue_minor(&self, today: NaiveDate) -> i64 {
        self.lines
            .iter()
            .filter(|l| l.is_overdue(today))
            .map(Line::total_outstanding)
            .sum()
    }

    /// Money received: `amount` from `method` into customer credit.
    pub fn receive(&mut self, amount_minor: i64, method: &str) -> Posting {
        let mut p = Posting::new(PostingKind::Payment, format!("{method} payment received"));
        p.push(Account::Clearing(method.to_owned()), None, amount_minor);
        p.push(Account::CustomerCredit, None, -amount_minor);
        self.credit_minor += amount_minor;
        p
    }

    /// Applies waiting credit: to everything when it covers everything (the
    /// contract is then paid off), else to the installments due by `today`
    /// (only the deposit while `dated` is false), oldest first, each in
    /// `order`. Returns no posting when nothing moved.
    pub fn allocate(&mut self, today: NaiveDate, dated: bool, order: &[Component]) -> Outcome {
        let mut out = Outcome::default();
        if self.credit_minor <= 0 {
            return out;
        }
        let settle_all = self.credit_minor >= self.outstanding();
        let mut p = Posting::new(PostingKind::Allocation, "credit applied");
        for line in &mut self.lines {
            if self.credit_minor == 0 {
                break;
            }
            let eligible = settle_all || line.number == 0 || (dated && line.due_date <= today);
            if !eligible {
                continue;
            }
            for &c in order {
                let owed = line.outstanding(c);
                let take = owed.min(self.credit_minor);
                if take <= 0 {
                    continue;
                }
                line.paid[c.index()] += take;
                self.credit_minor -= take;
                p.push(Account::CustomerCredit, Some(line.number), take);
                p.push(
                    Account::receivable(c, line.number),
                    Some(line.number),
                    -take,
                );
                if c == Component::Interest {
                    // Interest becomes income as it is collected.
                    p.push(Account::UnearnedInterest, Some(line.number), take);
                    p.push(Account::InterestIncome, Some(line.number), -take);
                }
                if !out.touched.contains(&line.number) {
                    out.touched.push(line.number);
                }
            }
        }
        if !p.entries.is_empty() {
            out.postings.push(p);
        }
        out
    }

    /// Charges installment `number` its late fee, once.
    pub fn charge_late_fee(&mut self, number: u32, fee_minor: i64) -> Option<Outcome> {
        let line = self.lines.iter_mut().find(|l| l.number == number)?;
        if line.late_fee_charged {
            return None;
        }
        line.late_fee_charged = true;
        line.due[Component::Penalties.index()] += fee_minor;
        let mut out = Outcome::default();
        out.touch(number);
        if fee_minor > 0 {
            let mut p = Posting::new(
                PostingKind::LateFee,
                format!("late fee on installment {number}"),
            );
            p.push(Account::PenaltiesReceivable, Some(number), fee_minor);
            p.push(Account::PenaltyIncome, Some(number), -fee_minor);
            out.postings.push(p);
        }
        Some(out)
    }

    /// Takes back a payment of `amount` received by `method`. Credit not yet
    /// applied goes first; what it lacks is unapplied from the latest
    /// installments, each in reverse allocation order.
    pub fn reverse(&mut self, amount_minor: i64, method: &str, order: &[Component]) -> Outcome {
        let mut out = Outcome::default();
        let mut shortfall = amount_minor - self.credit_minor;
        if shortfall > 0 {
            let mut p = Posting::new(
                PostingKind::Unallocation,
                "applied credit taken back for a reversal",
            );
            for line in self.lines.iter_mut().rev() {
                if shortfall == 0 {
                    break;
                }
                for &c in order.iter().rev() {
                    let back = line.paid[c.index()].min(shortfall);
                    if back <= 0 {
                        continue;
                    }
                    line.paid[c.index()] -= back;
                    shortfall -= back;
                    self.credit_minor += back;
                    p.push(Account::receivable(c, line.number), Some(line.number), back);
                    p.push(Account::CustomerCredit, Some(line.number), -back);
                    if c == Component::Interest {
                        p.push(Account::InterestIncome, Some(line.number), back);
                        p.push(Account::UnearnedInterest, Some(line.number), -back);
                    }
                    if !out.touched.contains(&line.number) {
                        out.touched.push(line.number);
                    }
                    if shortfall == 0 {
                        break;
                    }
                }
            }
            if !p.entries.is_empty() {
                out.postings.push(p);
            }
        }
        let mut p = Posting::new(PostingKind::Reversal, format!("{method} payment reversed"));
        p.push(Account::CustomerCredit, None, amount_minor);
        p.push(Account::Clearing(method.to_owned()), None, -amount_minor);
        self.credit_minor -= amount_minor;
        out.postings.push(p);
        out
    }

    /// Moves the due dates of unpaid installments due on or after `from` by `days`.
    pub fn shift_due_dates(&mut self, from: NaiveDate, days: u64) -> Vec<u32> {
        let mut touched = Vec::new();
        for line in &mut self.lines {
            if line.number > 0 && line.total_outstanding() > 0 && line.due_date >= from {
                if let Some(d) = line.due_date.checked_add_days(chrono::Days::new(days)) {
                    line.due_date = d;
                    touched.push(line.number);
                }
            }
        }
        touched
    }

    /// Waives `(installment, amount)` of interest (a payoff on a product that
    /// waives future interest).
    pub fn waive_interest(&mut self, amounts: &[(u32, i64)]) -> Outcome {
        let mut out = Outcome::default();
        let mut p = Posting::new(PostingKind::Waiver, "future interest waived at payoff");
        for &(number, amount) in amounts {
            let Some(line) = self.lines.iter_mut().find(|l| l.number == number) else {
                continue;
            };
            let amount = amount.min(line.outstanding(Component::Interest));
            if amount > 0 {
                line.waived[Component::Interest.index()] += amount;
                p.push(Account::UnearnedInterest, Some(number), amount);
                p.push(Account::InterestReceivable, Some(number), -amount);
                out.touch(number);
            }
        }
        if !p.entries.is_empty() {
            out.postings.push(p);
        }
        out
    }

    /// Undoes the origination of a contract cancelled before any payment.
    pub fn write_off_as_cancelled(&mut self) -> Outcome {
        let mut out = Outcome::default();
        let mut p = Posting::new(PostingKind::WriteOff, "cancelled before activation");
        let mut sale = 0;
        for line in &mut self.lines {
            for c in [
                Component::Penalties,
                Component::Fees,
                Component::Interest,
                Component::Principal,
            ] {
                let amount = line.outstanding(c);
                if amount <= 0 {
                    continue;
                }
                line.waived[c.index()] += amount;
                p.push(
                    Account::receivable(c, line.number),
                    Some(line.number),
                    -amount,
                );
                match c {
                    Component::Interest => {
                        p.push(Account::UnearnedInterest, Some(line.number), amount)
                    }
                    Component::Fees => p.push(Account::FeeIncome, Some(line.number), amount),
                    Component::Penalties => {
                        p.push(Account::PenaltyIncome, Some(line.number), amount)
                    }
                    Component::Principal => sale += amount,
                }
                out.touch(line.number);
            }
        }
        p.push(Account::VehicleSales, None, sale);
        if !p.entries.is_empty() {
            out.postings.push(p);
        }
        out
    }

    /// Writes off everything still owed: principal, deposit, fees and
    /// penalties as a loss; uncollected interest was never income, so it
    /// leaves unearned interest instead.
    pub fn write_off(&mut self) -> Outcome {
        let mut out = Outcome::default();
        let mut p = Posting::new(PostingKind::WriteOff, "written off");
        let mut loss = 0;
        for line in &mut self.lines {
            for c in [
                Component::Penalties,
                Component::Fees,
                Component::Interest,
                Component::Principal,
            ] {
                let amount = line.outstanding(c);
                if amount <= 0 {
                    continue;
                }
                line.waived[c.index()] += amount;
                p.push(
                    Account::receivable(c, line.number),
                    Some(line.number),
                    -amount,
                );
                if c == Component::Interest {
                    p.push(Account::UnearnedInterest, Some(line.number), amount);
                } else {
                    loss += amount;
                }
                out.touch(line.number);
            }
        }
        p.push(Account::WriteOffLoss, None, loss);
        if !p.entries.is_empty() {
            out.postings.push(p);
        }
        out
    }

    /// Settles the whole book by taking its vehicle back at `value_minor`
    /// (an upgrade). Interest not yet paid was never earned and leaves
    /// unearned interest; principal, fees and penalties still owed are paid
    /// from the value, and waiting credit is released. What is left, the
    /// equity, leaves through `clearing:trade_in` for the new contract.
    /// `None`, and nothing changed, when the value and the credit do not
    /// cover what is owed.
    pub fn trade_in(&mut self, value_minor: i64) -> Option<(Outcome, i64)> {
        let debt: i64 = self
            .lines
            .iter()
            .map(|l| l.total_outstanding() - l.outstanding(Component::Interest))
            .sum();
        let equity = value_minor
            .checked_add(self.credit_minor)?
            .checked_sub(debt)?;
        if value_minor < 0 || equity < 0 {
            return None;
        }
        let mut out = Outcome::default();
        let mut p = Posting::new(PostingKind::TradeIn, "vehicle traded in for an upgrade");
        for line in &mut self.lines {
            for c in [
                Component::Penalties,
                Component::Fees,
                Component::Interest,
                Component::Principal,
            ] {
                let amount = line.outstanding(c);
                if amount <= 0 {
                    continue;
                }
                p.push(
                    Account::receivable(c, line.number),
                    Some(line.number),
                    -amount,
                );
                if c == Component::Interest {
                    line.waived[c.index()] += amount;
                    p.push(Account::UnearnedInterest, Some(line.number), amount);
                } else {
                    line.paid[c.index()] += amount;
                }
                out.touch(line.number);
            }
        }
        p.push(Account::VehicleReturns, None, value_minor);
        p.push(Account::CustomerCredit, None, self.credit_minor);
        p.push(Account::Clearing("trade_in".into()), None, -equity);
        self.credit_minor = 0;
        if !p.entries.is_empty() {
            out.postings.push(p);
        }
        Some((out, equity))
    }

    /// Late fees due by `today` under `fee`: one per installment unpaid more
    /// than the grace days after its due date. Returns what was charged.
    pub fn charge_late_fees(&mut self, today: NaiveDate, fee: &super::product::LateFee) -> Outcome {
        let mut out = Outcome::default();
        let due: Vec<(u32, i64)> = self
            .lines
            .iter()
            .filter(|l| {
                l.number > 0
                    && !l.late_fee_charged
                    && l.total_outstanding() > 0
                    && (today - l.due_date).num_days() > i64::from(fee.grace_days)
            })
            .map(|l| (l.number, fee.amount(l.total_outstanding())))
            .collect();
        for (number, amount) in due {
            if let Some(o) = self.charge_late_fee(number, amount) {
                out.absorb(o);
            }
        }
        out
    }
}

/// Merges outcomes in order.
pub fn merge(outcomes: impl IntoIterator<Item = Outcome>) -> Outcome {
    let mut all = Outcome::default();
    for o in outcomes {
        all.absorb(o);
    }
    all
}
