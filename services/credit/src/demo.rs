//! `serve --demo`: four customers whose statements land in each decision
//! (approved, conditionally approved, manual review, declined), driven
//! through the platform's own HTTP API as an agent would: register the
//! customer, submit and approve KYC, reserve a motorcycle, apply with an
//! M-Pesa statement. Seeding twice adds nothing (a customer who can already
//! log in is left alone).
// Amounts are written as shillings_cents (200_00 is KES 200.00).
#![allow(clippy::inconsistent_digit_grouping)]

use std::fmt::Write;
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::NaiveDate;
use serde_json::{json, Value};

/// How a demo customer's statement looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Story {
    /// Paid every week by many passengers, no betting: approved.
    Steady,
    /// Steady, but the installment is too large for the income: conditionally approved.
    Stretched,
    /// No statement, no history: manual review.
    ThinFile,
    /// Income in 5 of 13 weeks, heavy betting, failures: declined.
    Shaky,
}

pub struct DemoCustomer {
    pub name: &'static str,
    pub phone: &'static str,
    pub story: Story,
}

/// The password of every demo credit customer (public on purpose: demo data only).
pub const PASSWORD: &str = "demo-customer-2026";

pub const CUSTOMERS: &[DemoCustomer] = &[
    DemoCustomer {
        name: "Esther Njeri (approved)",
        phone: "+254700000101",
        story: Story::Steady,
    },
    DemoCustomer {
        name: "Felix Ouma (conditional)",
        phone: "+254700000102",
        story: Story::Stretched,
    },
    DemoCustomer {
        name: "Grace Wambui (manual review)",
        phone: "+254700000103",
        story: Story::ThinFile,
    },
    DemoCustomer {
        name: "Hassan Ali (declined)",
        phone: "+254700000104",
        story: Story::Shaky,
    },
];

/// A CSV statement: `weeks_with_income` of 13 weeks with `fares` payments of
/// `fare_minor` from `payers` people, and weekly spending (`betting_minor` of it betting).
pub fn statement(
    income_weeks: &[i64],
    fares: i64,
    fare_minor: i64,
    payers: i64,
    spend_minor: i64,
    betting_minor: i64,
    failed: i64,
) -> String {
    let start = NaiveDate::from_ymd_opt(2025, 12, 1).unwrap_or_default();
    let mut out = String::from(
        "Receipt No.,Completion Time,Details,Transaction Status,Paid In,Withdrawn,Balance\n",
    );
    let amount = |m: i64| format!("{}.{:02}", m / 100, m % 100);
    let mut balance: i64 = 2_000_00;
    let mut n = 0;
    for w in 0..13 {
        let day = start + chrono::Duration::days(w * 7);
        if income_weeks.contains(&w) {
            for f in 0..fares {
                n += 1;
                balance += fare_minor;
                let _ = writeln!(
                    out,
                    "DM{n:08},{} 08:{:02}:00,Funds received from 07110{:05} - PASSENGER,Completed,\"{}\",,\"{}\"",
                    day + chrono::Duration::days(f % 6),
                    f % 60,
                    (w * fares + f) % payers.max(1),
                    amount(fare_minor),
                    amount(balance)
                );
            }
        }
        for (what, spend) in [
            ("Merchant Payment to 522533 - FUEL STATION", spend_minor),
            ("Pay Bill Online to 955100 - SportPesa", betting_minor),
        ] {
            let spend = spend.min(balance);
            if spend > 0 {
                n += 1;
                balance -= spend;
                let _ = writeln!(
                    out,
                    "DM{n:08},{} 19:00:00,{what},Completed,,-{},{}",
                    day + chrono::Duration::days(6),
                    amount(spend),
                    amount(balance)
                );
            }
        }
    }
    for f in 0..failed {
        n += 1;
        let _ = writeln!(
            out,
            "DM{n:08},{} 12:00:00,Customer Transfer to 0722000111,Failed,,-100.00,{}",
            start + chrono::Duration::days(f + 1),
            amount(balance)
        );
    }
    out
}

/// The smallest valid JPEG and PNG, for the demo's KYC documents.
fn jpeg() -> Vec<u8> {
    let mut b = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x01, 0x00, 0x00,
        0x01, 0x00, 0x01, 0x00, 0x00,
    ];
    b.extend(std::iter::repeat_n(0u8, 64));
    b.extend([0xFF, 0xD9]);
    b
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        token: Option<&str>,
    ) -> anyhow::Result<(u16, Value)> {
        let req = match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> anyhow::Result<(u16, Value)> {
        let req = self.http.post(format!("{}{path}", self.base)).json(&body);
        self.send(req, token).await
    }

    async fn get(&self, path: &str, token: &str) -> anyhow::Result<(u16, Value)> {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send(req, Some(token)).await
    }

    async fn login(&self, login: &str, password: &str) -> anyhow::Result<Option<String>> {
        let (status, body) = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({"login": login, "password": password}),
            )
            .await?;
        Ok((status == 200)
            .then(|| body["access_token"].as_str().map(str::to_owned))
            .flatten())
    }
}

/// The agent enters the code the customer received, as at a branch: read
/// here off the SMS sandbox. Without the sandbox (real SMS, or sandboxes
/// off) the customer stays unverified and receives no money prompt.
async fn verify_on_the_spot(api: &Api, agent: &str, user_id: &str, phone: &str) {
    let code = patiently("the demo customer's phone code", || async {
        let req = api.http.get(format!("{}/sandbox/sms/messages", api.base));
        let (status, sent) = api.send(req, None).await?;
        if status == 404 {
            bail!("no SMS sandbox here");
        }
        Ok(sent.as_array().and_then(|messages| {
            messages
                .iter()
                .filter(|m| m["request"]["to"] == phone)
                .find_map(|m| {
                    m["request"]["message"]
                        .as_str()?
                        .split(|c: char| !c.is_ascii_digit())
                        .find(|w| w.len() == 6)
                        .map(str::to_owned)
                })
        }))
    })
    .await;
    let verified = match code {
        Ok(code) => api
            .post(
                &format!("/api/v1/users/{user_id}/verify-phone"),
                Some(agent),
                json!({"code": code}),
            )
            .await
            .map(|(status, _)| status == 200)
            .unwrap_or(false),
        Err(_) => false,
    };
    if !verified {
        tracing::warn!(
            customer = user_id,
            "demo: the customer's phone could not be verified here; no money prompt will reach them"
        );
    }
}

/// Retries `step` (which answers `None` while the platform is still catching up) for up to 15 s.
async fn patiently<T, F, Fut>(what: &str, mut step: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    for _ in 0..75 {
        if let Some(v) = step().await? {
            return Ok(v);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("demo: timed out waiting for {what}")
}

/// Seeds the demo credit customers through the API at `base`, as the demo
/// agent (`agent` login and password) with the demo admin reviewing KYC.
/// Returns how many customers were added.
pub async fn seed_demo(
    base: &str,
    admin: (&str, &str),
    agent: (&str, &str),
) -> anyhow::Result<usize> {
    let api = Api {
        base: base.trim_end_matches('/').to_owned(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
    };
    let admin = api
        .login(admin.0, admin.1)
        .await?
        .context("demo: the demo admin cannot log in")?;
    let agent = api
        .login(agent.0, agent.1)
        .await?
        .context("demo: the demo agent cannot log in")?;
    let (_, products) = api.get("/api/v1/products?limit=100", &admin).await?;
    let product = products["items"]
        .as_array()
        .and_then(|items| {
            items.iter().find(|p| {
                p["frequency"] == "weekly"
                    && p["status"] == "active"
                    && p["vehicle_types"]
                        .as_array()
                        .is_some_and(|t| t.iter().any(|v| v == "motorcycle"))
            })
        })
        .cloned()
        .context("demo: no weekly motorcycle product")?;
    let mut added = 0;
    for c in CUSTOMERS {
        if api.login(c.phone, PASSWORD).await?.is_some() {
            continue;
        }
        seed_one(&api, &admin, &agent, &product, c).await?;
        added += 1;
    }
    Ok(added)
}

async fn seed_one(
    api: &Api,
    admin: &str,
    agent: &str,
    product: &Value,
    c: &DemoCustomer,
) -> anyhow::Result<()> {
    let (status, user) = api
        .post(
            "/api/v1/users",
            Some(agent),
            json!({"name": c.name, "phone": c.phone, "password": PASSWORD}),
        )
        .await?;
    if status != 201 {
        bail!("demo: registering {}: {status} {user}", c.name);
    }
    let user_id = user["id"].as_str().context("demo: user id")?.to_owned();
    verify_on_the_spot(api, agent, &user_id, c.phone).await;
    let part = |name: &str| {
        reqwest::multipart::Part::bytes(jpeg())
            .file_name(format!("{name}.jpg"))
            .mime_str("image/jpeg")
    };
    let form = reqwest::multipart::Form::new()
        .text("document_type", "national_id")
        .text(
            "document_number",
            format!("3{}", &c.phone[c.phone.len() - 7..]),
        )
        .text("user_id", user_id.clone())
        .part("front", part("front")?)
        .part("back", part("back")?)
        .part("selfie", part("selfie")?);
    let req = api
        .http
        .post(format!("{}/api/v1/kyc/submissions", api.base))
        .multipart(form);
    let (status, submission) = api.send(req, Some(agent)).await?;
    if status != 201 {
        bail!("demo: KYC of {}: {status} {submission}", c.name);
    }
    let sid = submission["id"].as_str().context("demo: submission id")?;
    let (status, body) = api
        .post(
            &format!("/api/v1/kyc/submissions/{sid}/decision"),
            Some(admin),
            json!({"decision": "approve"}),
        )
        .await?;
    if status != 200 {
        bail!("demo: approving KYC of {}: {status} {body}", c.name);
    }
    let customer = api
        .login(c.phone, PASSWORD)
        .await?
        .context("demo: the new customer cannot log in")?;
    // Reserve an available motorcycle (vehicles learns the KYC approval from its event).
    let customer = customer.as_str();
    let (vehicle, price) = patiently("a reservation", || async move {
        let (_, page) = api
            .get(
                "/api/v1/vehicles?type=motorcycle&status=available&limit=20",
                customer,
            )
            .await?;
        for v in page["items"].as_array().into_iter().flatten() {
            let id = v["id"].as_str().unwrap_or_default();
            let (status, _) = api
                .post(
                    &format!("/api/v1/vehicles/{id}/reservations"),
                    Some(customer),
                    json!({}),
                )
                .await?;
            if status == 201 {
                return Ok(Some((
                    id.to_owned(),
                    v["price_minor"].as_i64().unwrap_or(0),
                )));
            }
            if status == 403 {
                return Ok(None);
            }
        }
        Ok(None)
    })
    .await?;
    // The plan: 20 % down over 78 weeks, quoted by payments.
    let deposit = (price / 5 + 99_99) / 100_00 * 100_00;
    let term = 78;
    let (status, q) = api
        .post(
            "/api/v1/quotes",
            Some(customer),
            json!({"product_id": product["id"], "price_minor": price, "currency": product["currency"],
                   "deposit_minor": deposit, "term_periods": term}),
        )
        .await?;
    if status != 200 {
        bail!("demo: quoting for {}: {status} {q}", c.name);
    }
    let monthly = q["installment_minor"].as_i64().unwrap_or(0) * 52 / 12;
    // Income sized to the installment: 27 % of it (affordable) or 45 % (not).
    let (income, csv) = match c.story {
        Story::Steady => {
            let income = monthly * 100 / 27;
            (income, Some(steady(income)))
        }
        Story::Stretched => {
            let income = monthly * 100 / 45;
            (income, Some(steady(income)))
        }
        Story::ThinFile => (monthly * 100 / 30, None),
        Story::Shaky => (
            8_000_00,
            Some(statement(
                &[0, 3, 6, 9, 12],
                3,
                1_500_00,
                2,
                500_00,
                1_500_00,
                4,
            )),
        ),
    };
    let application = json!({
        "customer_id": user_id, "vehicle_id": vehicle, "product_id": product["id"],
        "deposit_minor": deposit, "term_periods": term, "occupation": "boda_rider",
        "income": {"declared_minor": income, "frequency": "monthly"},
    });
    patiently("the application", || {
        let application = application.clone();
        let csv = csv.clone();
        async move {
            let mut form = reqwest::multipart::Form::new().part(
                "application",
                reqwest::multipart::Part::text(application.to_string())
                    .mime_str("application/json")?,
            );
            if let Some(csv) = csv {
                form = form.part(
                    "statement",
                    reqwest::multipart::Part::text(csv)
                        .file_name("statement.csv")
                        .mime_str("text/csv")?,
                );
            }
            let req = api
                .http
                .post(format!("{}/api/v1/applications", api.base))
                .multipart(form);
            let (status, body) = api.send(req, Some(agent)).await?;
            match status {
                201 => Ok(Some(())),
                // Credit has not yet heard of the reservation or the KYC.
                403 | 409 => Ok(None),
                _ => bail!("demo: the application of {}: {status} {body}", c.name),
            }
        }
    })
    .await
}

/// A steady rider's statement with `monthly_minor` coming in.
fn steady(monthly_minor: i64) -> String {
    let weekly = monthly_minor * 12 / 52;
    statement(
        &(0..13).collect::<Vec<_>>(),
        20,
        weekly / 20,
        40,
        weekly / 2,
        0,
        0,
    )
}
