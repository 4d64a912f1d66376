//! A realistic East African inventory for demos and benchmarks: motorcycles
//! for boda boda riders, cars for ride-hailing, vans and trucks for traders,
//! at branches across Kenya, priced in KES. Generation is deterministic, so
//! seeding twice (or importing the same generated sheet twice) adds nothing.

use miliki_platform::ApiError;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::domain::VehicleFields;
use crate::import::{self, RowInput};
use crate::state::AppState;

/// Branches and where they are.
pub const BRANCHES: &[(&str, f64, f64)] = &[
    ("Nairobi CBD", -1.2841, 36.8233),
    ("Nairobi Westlands", -1.2676, 36.8108),
    ("Nairobi Embakasi", -1.3226, 36.8985),
    ("Thika", -1.0333, 37.0693),
    ("Mombasa", -4.0435, 39.6682),
    ("Kisumu", -0.0917, 34.7680),
    ("Nakuru", -0.3031, 36.0800),
    ("Eldoret", 0.5143, 35.2698),
];

struct Model {
    kind: &'static str,
    make: &'static str,
    model: &'static str,
    wmi: &'static str,
    /// KES, whole shillings, for a new one.
    price: i64,
    engine_cc: Option<i64>,
    seats: Option<i64>,
    transmission: Option<&'static str>,
    cargo: Option<i64>,
    payload: Option<i64>,
    axles: Option<i64>,
    fuel: &'static str,
}

const fn moto(
    make: &'static str,
    model: &'static str,
    wmi: &'static str,
    price: i64,
    cc: Option<i64>,
    fuel: &'static str,
) -> Model {
    Model {
        kind: "motorcycle",
        make,
        model,
        wmi,
        price,
        engine_cc: cc,
        seats: None,
        transmission: None,
        cargo: None,
        payload: None,
        axles: None,
        fuel,
    }
}
const fn car(
    make: &'static str,
    model: &'static str,
    wmi: &'static str,
    price: i64,
    seats: i64,
    t: &'static str,
    fuel: &'static str,
) -> Model {
    Model {
        kind: "car",
        make,
        model,
        wmi,
        price,
        engine_cc: None,
        seats: Some(seats),
        transmission: Some(t),
        cargo: None,
        payload: None,
        axles: None,
        fuel,
    }
}
const fn van(
    make: &'static str,
    model: &'static str,
    wmi: &'static str,
    price: i64,
    cargo: i64,
    seats: Option<i64>,
) -> Model {
    Model {
        kind: "van",
        make,
        model,
        wmi,
        price,
        engine_cc: None,
        seats,
        transmission: None,
        cargo: Some(cargo),
        payload: None,
        axles: None,
        fuel: "diesel",
    }
}
const fn truck(
    make: &'static str,
    model: &'static str,
    wmi: &'static str,
    price: i64,
    payload: i64,
    axles: i64,
) -> Model {
    Model {
        kind: "truck",
        make,
        model,
        wmi,
        price,
        engine_cc: None,
        seats: None,
        transmission: None,
        cargo: None,
        payload: Some(payload),
        axles: Some(axles),
        fuel: "diesel",
    }
}

const MOTORCYCLES: &[Model] = &[
    moto("Bajaj", "Boxer BM150", "MD2", 165_000, Some(150), "petrol"),
    moto("TVS", "HLX 125", "MD6", 140_000, Some(125), "petrol"),
    moto("Honda", "Ace CB125", "ME4", 160_000, Some(125), "petrol"),
    moto("Haojue", "HJ150-9", "LC6", 150_000, Some(150), "petrol"),
    moto("Yamaha", "Crux 110", "MH3", 150_000, Some(110), "petrol"),
    moto("Roam", "Air", "RAM", 230_000, None, "electric"),
];
const CARS: &[Model] = &[
    car("Toyota", "Vitz", "JTD", 950_000, 5, "automatic", "petrol"),
    car("Toyota", "Axio", "JTN", 1_550_000, 5, "automatic", "petrol"),
    car(
        "Toyota",
        "Probox",
        "JTP",
        1_200_000,
        5,
        "automatic",
        "petrol",
    ),
    car("Nissan", "Note", "JN1", 1_050_000, 5, "automatic", "petrol"),
    car("Honda", "Fit", "JHM", 1_100_000, 5, "automatic", "hybrid"),
    car("Mazda", "Demio", "JM1", 900_000, 5, "automatic", "petrol"),
    car(
        "Toyota",
        "Fielder",
        "JTF",
        1_600_000,
        5,
        "automatic",
        "hybrid",
    ),
    car("Suzuki", "Swift", "JS2", 1_100_000, 5, "manual", "petrol"),
];
const VANS: &[Model] = &[
    van("Toyota", "HiAce", "JTH", 3_200_000, 6_000, Some(3)),
    van("Nissan", "Caravan NV350", "JNC", 2_800_000, 5_500, Some(3)),
    van("Mitsubishi", "L300", "JMB", 1_900_000, 4_200, Some(3)),
    van("Suzuki", "Every", "JSE", 1_000_000, 2_000, Some(2)),
];
const TRUCKS: &[Model] = &[
    truck("Isuzu", "NQR", "JAL", 5_500_000, 5_000, 2),
    truck("Isuzu", "FRR", "JAF", 7_200_000, 7_500, 2),
    truck("Mitsubishi", "Canter", "JMC", 4_200_000, 3_500, 2),
    truck("Hino", "300", "JHD", 4_800_000, 4_000, 2),
    truck("Tata", "LPT 1618", "MAT", 6_500_000, 10_000, 2),
    truck("Isuzu", "FVZ", "JAV", 9_500_000, 15_000, 3),
];

const COLOURS: &[&str] = &[
    "red", "black", "white", "silver", "blue", "grey", "green", "maroon",
];

fn letter(n: u64) -> char {
    (b'A' + (n % 26) as u8) as char
}

/// The `index`-th vehicle of `namespace` (0 for the demo, others for benchmarks).
pub fn vehicle(index: u64, namespace: u64) -> VehicleFields {
    let mut rng = StdRng::seed_from_u64(index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ namespace);
    let roll: u32 = rng.gen_range(0..100);
    let (models, kind_share) = match roll {
        0..=44 => (MOTORCYCLES, 0),
        45..=74 => (CARS, 1),
        75..=87 => (VANS, 2),
        _ => (TRUCKS, 3),
    };
    let m = &models[rng.gen_range(0..models.len())];
    let (branch, blat, blon) = BRANCHES[rng.gen_range(0..BRANCHES.len())];
    let year: i64 = if kind_share == 0 {
        rng.gen_range(2022..=2026)
    } else {
        rng.gen_range(2012..=2025)
    };
    let age = (2026 - year).max(0);
    let new = kind_share == 0 && age == 0;
    let mileage: i64 = if new {
        0
    } else {
        age * rng.gen_range(8_000..25_000) + rng.gen_range(0..5_000)
    };
    // A year of age takes about 7 % off; round to the nearest thousand shillings.
    let shillings = (m.price as f64 * 0.93f64.powi(age as i32) * rng.gen_range(0.95..1.08)) as i64;
    let shillings = (shillings / 1000).max(1) * 1000;
    let colour = COLOURS[rng.gen_range(0..COLOURS.len())];
    let serial = index + namespace * 5_000_000;
    let vin = format!("{}{}{:013}", m.wmi, namespace % 10, serial);
    let plate_letters = format!(
        "{}{}",
        letter(serial / 676_000 + 2),
        letter(serial / 26_000)
    );
    let registration = if kind_share == 0 {
        format!(
            "KM{plate_letters} {:03}{}",
            serial % 1000,
            letter(serial / 1000)
        )
    } else {
        format!(
            "K{plate_letters} {:03}{}",
            serial % 1000,
            letter(serial / 1000)
        )
    };
    let purpose = match kind_share {
        0 => "Ideal for boda boda work: fuel efficient, easy to maintain, spares in every town.",
        1 => "Popular with ride-hailing drivers (Uber, Bolt, Little): economical and comfortable.",
        2 => "Built for deliveries, market runs and school transport.",
        _ => "For haulage of produce, construction materials and fast-moving goods.",
    };
    let condition = if new {
        "new"
    } else if rng.gen_bool(0.15) {
        "refurbished"
    } else {
        "used"
    };
    let jitter = |rng: &mut StdRng| rng.gen_range(-0.04..0.04);
    VehicleFields {
        vehicle_type: Some(m.kind.into()),
        make: Some(m.make.into()),
        model: Some(m.model.into()),
        year: Some(year),
        colour: Some(colour.into()),
        vin: Some(vin),
        registration: Some(registration),
        mileage_km: Some(mileage),
        condition: Some(condition.into()),
        fuel: Some(m.fuel.into()),
        branch: Some(branch.into()),
        latitude: Some(((blat + jitter(&mut rng)) * 1e5).round() / 1e5),
        longitude: Some(((blon + jitter(&mut rng)) * 1e5).round() / 1e5),
        price_minor: Some(shillings * 100),
        currency: Some("KES".into()),
        cost_price_minor: Some(shillings * 80),
        notes: rng
            .gen_bool(0.2)
            .then(|| "Imported through Mombasa; inspected by KEBS.".to_owned()),
        description: Some(format!(
            "{year} {} {} in {colour}, {condition}. {purpose}",
            m.make, m.model
        )),
        engine_cc: m.engine_cc,
        seats: m.seats,
        transmission: m.transmission.map(str::to_owned),
        cargo_volume_litres: m.cargo,
        payload_kg: m.payload,
        axles: m.axles,
    }
}

/// `count` vehicles of `namespace`.
pub fn generate(count: u64, namespace: u64) -> impl Iterator<Item = VehicleFields> {
    (0..count).map(move |i| vehicle(i, namespace))
}

/// How many vehicles `miliki serve --demo` lists.
pub const DEMO_SIZE: u64 = 300;

/// Lists the demo inventory; vehicles already there are left alone. Returns how many were added.
pub async fn seed_demo(state: &AppState) -> Result<usize, ApiError> {
    let rows = generate(DEMO_SIZE, 0)
        .enumerate()
        .map(|(i, fields)| RowInput {
            row: i + 1,
            fields,
            errors: Vec::new(),
        })
        .collect();
    let report = import::import_rows(state, rows, &mut |_| {}).await?;
    if report.failed > 0 {
        tracing::warn!(failed = report.failed, errors = ?report.errors.iter().take(5).collect::<Vec<_>>(), "some demo vehicles were refused");
    }
    Ok(report.imported)
}
