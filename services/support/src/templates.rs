//! The notification catalogue: one template per kind of message, each with a
//! title, a long body (email, in-app) and a short text (SMS, push), in English
//! and Swahili. Rendering is strict: a variable a template names but the
//! event did not supply is an error, which the tests below catch for every
//! template in both languages.

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use crate::notify::Channel;

/// What a message is about, for the customer's channel preferences.
pub const CATEGORIES: &[&str] = &[
    "account",
    "reservations",
    "credit",
    "contracts",
    "payments",
    "security",
    "support",
];

/// Languages every template is written in.
pub const LANGUAGES: &[&str] = &["en", "sw"];

/// One kind of message.
#[derive(Debug, Clone, Copy)]
pub struct Template {
    pub name: &'static str,
    pub category: &'static str,
    /// `low`, `normal`, `high` or `critical` (critical ignores quiet hours and rate limits).
    pub priority: &'static str,
    /// Variables the templates use; the tests render with exactly these.
    pub vars: &'static [&'static str],
    /// `[language] = (title, body, short)`.
    pub en: (&'static str, &'static str, &'static str),
    pub sw: (&'static str, &'static str, &'static str),
}

pub const TEMPLATES: &[Template] = &[
    Template {
        name: "upgrade_approved",
        category: "contracts",
        priority: "normal",
        vars: &["equity"],
        en: (
            "Your upgrade is approved",
            "Your upgrade request is approved: {{ equity }} of equity in your current vehicle will pay the deposit on the new one. Reserve it and apply for its plan to go ahead.",
            "Miliki: upgrade approved. {{ equity }} equity goes to your new deposit.",
        ),
        sw: (
            "Ombi lako la kubadilisha gari limeidhinishwa",
            "Ombi lako la kubadilisha gari limeidhinishwa: {{ equity }} za hisa yako katika gari la sasa zitalipa amana ya gari jipya. Lihifadhi na uombe mpango wake ili kuendelea.",
            "Miliki: ombi la kubadilisha gari limeidhinishwa. {{ equity }} zitalipa amana mpya.",
        ),
    },
    Template {
        name: "upgrade_declined",
        category: "contracts",
        priority: "normal",
        vars: &["reason"],
        en: (
            "Your upgrade request was declined",
            "We could not approve your upgrade request: {{ reason }}. Your current contract goes on as before.",
            "Miliki: upgrade request declined: {{ reason }}",
        ),
        sw: (
            "Ombi lako la kubadilisha gari limekataliwa",
            "Hatukuweza kuidhinisha ombi lako la kubadilisha gari: {{ reason }}. Mkataba wako wa sasa unaendelea kama kawaida.",
            "Miliki: ombi la kubadilisha gari limekataliwa: {{ reason }}",
        ),
    },
    Template {
        name: "upgrade_completed",
        category: "contracts",
        priority: "normal",
        vars: &["equity"],
        en: (
            "Upgrade complete",
            "Your new vehicle's contract is active. Your previous vehicle was traded in and {{ equity }} of equity went to the new contract. Please return the previous vehicle to the branch.",
            "Miliki: upgrade complete. {{ equity }} equity carried over; return your old vehicle.",
        ),
        sw: (
            "Ubadilishaji wa gari umekamilika",
            "Mkataba wa gari lako jipya unatumika. Gari lako la awali limebadilishwa na {{ equity }} za hisa zimeenda kwenye mkataba mpya. Tafadhali rudisha gari la awali tawini.",
            "Miliki: ubadilishaji umekamilika. {{ equity }} zimehamishwa; rudisha gari la zamani.",
        ),
    },
    Template {
        name: "kyc_approved",
        category: "account",
        priority: "normal",
        vars: &[],
        en: (
            "Your identity is verified",
            "Good news: your identity documents were approved. You can now reserve a vehicle.",
            "Miliki: your ID is verified. You can now reserve a vehicle.",
        ),
        sw: (
            "Utambulisho wako umethibitishwa",
            "Habari njema: nyaraka zako za utambulisho zimeidhinishwa. Sasa unaweza kuhifadhi gari.",
            "Miliki: kitambulisho chako kimethibitishwa. Sasa unaweza kuhifadhi gari.",
        ),
    },
    Template {
        name: "kyc_rejected",
        category: "account",
        priority: "normal",
        vars: &["reason"],
        en: (
            "We could not verify your identity",
            "Your identity documents were not approved: {{ reason }}. Please contact us or submit them again.",
            "Miliki: your ID was not approved: {{ reason }}",
        ),
        sw: (
            "Hatukuweza kuthibitisha utambulisho wako",
            "Nyaraka zako za utambulisho hazikuidhinishwa: {{ reason }}. Tafadhali wasiliana nasi au uziwasilishe tena.",
            "Miliki: kitambulisho chako hakikuidhinishwa: {{ reason }}",
        ),
    },
    Template {
        name: "kyc_resubmission",
        category: "account",
        priority: "normal",
        vars: &["reason"],
        en: (
            "Please send your documents again",
            "We need your identity documents again: {{ reason }}.",
            "Miliki: please resubmit your ID: {{ reason }}",
        ),
        sw: (
            "Tafadhali tuma nyaraka zako tena",
            "Tunahitaji nyaraka zako za utambulisho tena: {{ reason }}.",
            "Miliki: tafadhali tuma kitambulisho tena: {{ reason }}",
        ),
    },
    Template {
        name: "reservation_made",
        category: "reservations",
        priority: "low",
        vars: &["expires_at"],
        en: (
            "Vehicle reserved",
            "Your vehicle is reserved for you until {{ expires_at }} (UTC). Complete your application before then.",
            "Miliki: vehicle reserved until {{ expires_at }} UTC.",
        ),
        sw: (
            "Gari limehifadhiwa",
            "Gari lako limehifadhiwa hadi {{ expires_at }} (UTC). Kamilisha maombi yako kabla ya muda huo.",
            "Miliki: gari limehifadhiwa hadi {{ expires_at }} UTC.",
        ),
    },
    Template {
        name: "reservation_expiring",
        category: "reservations",
        priority: "normal",
        vars: &["expires_at"],
        en: (
            "Your reservation ends soon",
            "Your reservation ends at {{ expires_at }} (UTC). Finish your application to keep the vehicle.",
            "Miliki: your reservation ends at {{ expires_at }} UTC.",
        ),
        sw: (
            "Uhifadhi wako unaisha hivi karibuni",
            "Uhifadhi wako unaisha saa {{ expires_at }} (UTC). Kamilisha maombi yako ili kubaki na gari.",
            "Miliki: uhifadhi wako unaisha {{ expires_at }} UTC.",
        ),
    },
    Template {
        name: "application_decided",
        category: "credit",
        priority: "normal",
        vars: &["status"],
        en: (
            "Your application was decided",
            "Your financing application is {{ status }}. Open the app to see the details and any offer waiting for you.",
            "Miliki: your application is {{ status }}.",
        ),
        sw: (
            "Maombi yako yameamuliwa",
            "Maombi yako ya mkopo ni {{ status }}. Fungua programu kuona maelezo na ofa inayokusubiri.",
            "Miliki: maombi yako ni {{ status }}.",
        ),
    },
    Template {
        name: "contract_active",
        category: "contracts",
        priority: "normal",
        vars: &["contract_id"],
        en: (
            "Deposit received: your contract is active",
            "We received your deposit and contract {{ contract_id }} is now active. Your repayment schedule starts today.",
            "Miliki: deposit received, contract active. Ride safe!",
        ),
        sw: (
            "Amana imepokelewa: mkataba wako unatumika",
            "Tumepokea amana yako na mkataba {{ contract_id }} sasa unatumika. Ratiba yako ya malipo inaanza leo.",
            "Miliki: amana imepokelewa, mkataba unatumika. Safari njema!",
        ),
    },
    Template {
        name: "collection_failed",
        category: "payments",
        priority: "high",
        vars: &["amount", "day", "rail"],
        en: (
            "We could not collect your installment",
            "We asked {{ rail }} for {{ amount }} on {{ day }} and the payment did not go through. \
             Pay any time from the app or to our paybill with your account number, or top up and we will try again.",
            "Miliki: we could not collect {{ amount }} by {{ rail }} today. Please pay via paybill or the app.",
        ),
        sw: (
            "Hatukuweza kukusanya awamu yako",
            "Tuliomba {{ amount }} kupitia {{ rail }} tarehe {{ day }} lakini malipo hayakufanikiwa. \
             Lipa wakati wowote kupitia programu au paybill yetu ukitumia nambari ya akaunti yako, au weka pesa na tutajaribu tena.",
            "Miliki: hatukuweza kukusanya {{ amount }} kupitia {{ rail }} leo. Tafadhali lipa kupitia paybill au programu.",
        ),
    },
    Template {
        name: "payment_received",
        category: "payments",
        priority: "normal",
        vars: &["amount", "method", "payment_id"],
        en: (
            "Payment received",
            "Receipt {{ payment_id }}: we received {{ amount }} by {{ method }}. Thank you.",
            "Miliki: received {{ amount }} by {{ method }}. Ref {{ payment_id }}.",
        ),
        sw: (
            "Malipo yamepokelewa",
            "Risiti {{ payment_id }}: tumepokea {{ amount }} kwa {{ method }}. Asante.",
            "Miliki: tumepokea {{ amount }} kwa {{ method }}. Kumb {{ payment_id }}.",
        ),
    },
    Template {
        name: "installment_due_soon",
        category: "payments",
        priority: "low",
        vars: &["amount", "due_date", "installment"],
        en: (
            "Your installment is due in two days",
            "Installment {{ installment }} of {{ amount }} is due on {{ due_date }}. \
             Keep the money in your mobile-money account, or pay ahead from the app or our paybill.",
            "Miliki: installment {{ installment }} of {{ amount }} is due on {{ due_date }}.",
        ),
        sw: (
            "Awamu yako inadaiwa baada ya siku mbili",
            "Awamu ya {{ installment }} ya {{ amount }} inadaiwa tarehe {{ due_date }}. \
             Weka pesa kwenye akaunti yako ya pesa za simu, au lipa mapema kupitia programu au paybill yetu.",
            "Miliki: awamu ya {{ installment }} ya {{ amount }} inadaiwa tarehe {{ due_date }}.",
        ),
    },
    Template {
        name: "installment_due_today",
        category: "payments",
        priority: "normal",
        vars: &["amount", "due_date", "installment"],
        en: (
            "Your installment is due today",
            "Installment {{ installment }} of {{ amount }} is due today ({{ due_date }}). \
             We will ask for it by mobile money; you can also pay from the app or our paybill.",
            "Miliki: installment {{ installment }} of {{ amount }} is due today ({{ due_date }}).",
        ),
        sw: (
            "Awamu yako inadaiwa leo",
            "Awamu ya {{ installment }} ya {{ amount }} inadaiwa leo ({{ due_date }}). \
             Tutaiomba kwa pesa za simu; unaweza pia kulipa kupitia programu au paybill yetu.",
            "Miliki: awamu ya {{ installment }} ya {{ amount }} inadaiwa leo ({{ due_date }}).",
        ),
    },
    Template {
        name: "arrears",
        category: "payments",
        priority: "high",
        vars: &["days_past_due", "overdue"],
        en: (
            "Your payment is overdue",
            "Your account is {{ days_past_due }} days past due with {{ overdue }} outstanding. Please pay to avoid fees.",
            "Miliki: {{ overdue }} is {{ days_past_due }} days overdue. Please pay now.",
        ),
        sw: (
            "Malipo yako yamechelewa",
            "Akaunti yako imechelewa siku {{ days_past_due }} na deni la {{ overdue }}. Tafadhali lipa ili kuepuka ada.",
            "Miliki: {{ overdue }} imechelewa siku {{ days_past_due }}. Tafadhali lipa sasa.",
        ),
    },
    Template {
        name: "immobilization_warning",
        category: "security",
        priority: "critical",
        vars: &["days_past_due", "not_before"],
        en: (
            "Your vehicle will be immobilized",
            "Your account is {{ days_past_due }} days past due. Unless you pay, your vehicle will be immobilized when parked after {{ not_before }} (UTC).",
            "Miliki URGENT: pay now. Vehicle immobilized when parked after {{ not_before }} UTC.",
        ),
        sw: (
            "Gari lako litazimwa",
            "Akaunti yako imechelewa siku {{ days_past_due }}. Usipolipa, gari lako litazimwa likiwa limeegeshwa baada ya {{ not_before }} (UTC).",
            "Miliki HARAKA: lipa sasa. Gari litazimwa likiegeshwa baada ya {{ not_before }} UTC.",
        ),
    },
    Template {
        name: "paid_off",
        category: "contracts",
        priority: "normal",
        vars: &[],
        en: (
            "Paid in full: congratulations",
            "You have paid your contract in full. We will now transfer ownership of the vehicle to you.",
            "Miliki: paid in full! Ownership transfer is under way.",
        ),
        sw: (
            "Umelipa kikamilifu: hongera",
            "Umelipa mkataba wako kikamilifu. Sasa tutahamisha umiliki wa gari kwako.",
            "Miliki: umelipa kikamilifu! Uhamisho wa umiliki unaendelea.",
        ),
    },
    Template {
        name: "ownership_transferred",
        category: "contracts",
        priority: "normal",
        vars: &[],
        en: (
            "The vehicle is yours",
            "Ownership of your vehicle has been transferred to you. Thank you for riding with Miliki.",
            "Miliki: the vehicle is now yours. Thank you!",
        ),
        sw: (
            "Gari ni lako",
            "Umiliki wa gari lako umehamishiwa kwako. Asante kwa kusafiri na Miliki.",
            "Miliki: gari sasa ni lako. Asante!",
        ),
    },
    Template {
        name: "ticket_reply",
        category: "support",
        priority: "normal",
        vars: &["subject"],
        en: (
            "New reply on your ticket",
            "Our team replied to your ticket \"{{ subject }}\". Open the app to read it.",
            "Miliki: new reply on \"{{ subject }}\".",
        ),
        sw: (
            "Jibu jipya kwenye tiketi yako",
            "Timu yetu imejibu tiketi yako \"{{ subject }}\". Fungua programu kulisoma.",
            "Miliki: jibu jipya kwenye \"{{ subject }}\".",
        ),
    },
    Template {
        // Sent by SMS only, to the phone being verified; never in-app.
        name: "phone_code",
        category: "security",
        priority: "critical",
        vars: &["code", "minutes"],
        en: (
            "Your Miliki code",
            "Your Miliki verification code is {{ code }}. It works for {{ minutes }} minutes. Never share it: Miliki staff will not ask for it.",
            "Miliki code: {{ code }}. Valid {{ minutes }} min. Do not share it.",
        ),
        sw: (
            "Nambari yako ya Miliki",
            "Nambari yako ya uthibitisho ya Miliki ni {{ code }}. Inafanya kazi kwa dakika {{ minutes }}. Usiishiriki: wafanyakazi wa Miliki hawataiomba.",
            "Nambari ya Miliki: {{ code }}. Dakika {{ minutes }}. Usiishiriki.",
        ),
    },
];

/// The digest that carries a customer's low-priority messages on one channel
/// (see [`crate::digest`]): `items` are the messages as rendered for that channel.
pub const DIGEST: Template = Template {
    name: "digest",
    category: "digest",
    priority: "low",
    vars: &["count", "items"],
    en: (
        "Your Miliki updates ({{ count }})",
        "Here is what is new since your last update:\n\n\
         {% for m in items %}{{ m.subject }}\n{{ m.body }}\n\n{% endfor %}",
        "Miliki ({{ count }}): {% for m in items %}{{ m.body | replace(\"Miliki: \", \"\") }}\
         {% if not loop.last %} | {% endif %}{% endfor %}",
    ),
    sw: (
        "Taarifa zako za Miliki ({{ count }})",
        "Haya ndiyo mapya tangu taarifa yako ya mwisho:\n\n\
         {% for m in items %}{{ m.subject }}\n{{ m.body }}\n\n{% endfor %}",
        "Miliki ({{ count }}): {% for m in items %}{{ m.body | replace(\"Miliki: \", \"\") }}\
         {% if not loop.last %} | {% endif %}{% endfor %}",
    ),
};

pub fn find(name: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.name == name)
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

/// Renders `template` for `channel` in `language` (unknown languages fall back to English).
pub fn render<V: Serialize>(
    template: &Template,
    language: &str,
    channel: Channel,
    vars: &V,
) -> Result<Rendered, minijinja::Error> {
    let (title, body, short) = if language == "sw" {
        template.sw
    } else {
        template.en
    };
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let text = match channel {
        Channel::Sms | Channel::Push => short,
        Channel::Email | Channel::InApp => body,
    };
    Ok(Rendered {
        subject: env.render_str(title, vars)?,
        body: env.render_str(text, vars)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn every_template_renders_on_every_channel_in_both_languages_with_its_declared_vars() {
        for t in TEMPLATES {
            assert!(CATEGORIES.contains(&t.category), "{}", t.name);
            let vars: BTreeMap<&str, String> =
                t.vars.iter().map(|v| (*v, format!("<{v}>"))).collect();
            for lang in LANGUAGES {
                for channel in Channel::ALL {
                    let r = render(t, lang, *channel, &vars)
                        .unwrap_or_else(|e| panic!("{} {lang} {channel}: {e}", t.name));
                    assert!(!r.body.is_empty() && !r.subject.is_empty());
                    if *channel == Channel::Sms {
                        assert!(
                            r.body.chars().count() <= 160,
                            "{} {lang} SMS too long",
                            t.name
                        );
                    }
                }
                // And every declared variable is used by some part.
                for v in t.vars {
                    let (title, body, short) = if *lang == "sw" { t.sw } else { t.en };
                    assert!(
                        [title, body, short].iter().any(|s| s.contains(v)),
                        "{} {lang} does not use {v}",
                        t.name
                    );
                }
            }
        }
    }

    #[test]
    fn the_digest_carries_every_item_in_both_languages() {
        let vars = serde_json::json!({"count": 2, "items": [
            {"subject": "First", "body": "Miliki: one thing."},
            {"subject": "Second", "body": "Miliki: another."},
        ]});
        for lang in LANGUAGES {
            for channel in Channel::ALL {
                let r = render(&DIGEST, lang, *channel, &vars)
                    .unwrap_or_else(|e| panic!("digest {lang} {channel}: {e}"));
                assert!(r.subject.contains('2'), "{lang} {channel}: {}", r.subject);
                assert!(r.body.contains("one thing") && r.body.contains("another"));
            }
        }
        let sms = render(&DIGEST, "en", Channel::Sms, &vars).unwrap();
        assert_eq!(sms.body, "Miliki (2): one thing. | another.");
        let email = render(&DIGEST, "sw", Channel::Email, &vars).unwrap();
        assert!(email.body.starts_with("Haya ndiyo mapya"));
        assert!(email.body.contains("Second\nMiliki: another."));
        assert!(render(
            &DIGEST,
            "en",
            Channel::Sms,
            &serde_json::json!({"count": 1})
        )
        .is_err());
    }

    #[test]
    fn a_missing_variable_fails_rather_than_rendering_blank() {
        let t = find("kyc_rejected").expect("template");
        let empty: BTreeMap<&str, String> = BTreeMap::new();
        assert!(render(t, "en", Channel::Sms, &empty).is_err());
        assert!(render(t, "sw", Channel::InApp, &empty).is_err());
    }

    #[test]
    fn swahili_differs_from_english() {
        let t = find("kyc_approved").expect("template");
        let empty: BTreeMap<&str, String> = BTreeMap::new();
        let en = render(t, "en", Channel::InApp, &empty).expect("en");
        let sw = render(t, "sw", Channel::InApp, &empty).expect("sw");
        assert_ne!(en, sw);
    }
}
