//! Bulk import, over HTTP and from the command line.

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::*;
use crate::support::*;

fn sheet() -> String {
    let (vin1, plate1) = unique_ids();
    let (vin2, plate2) = unique_ids();
    let (vin3, plate3) = unique_ids();
    let (vin4, plate4) = unique_ids();
    format!(
        "type,make,model,year,colour,vin,registration,mileage_km,condition,fuel,branch,latitude,longitude,price_minor,currency,description,engine_cc,seats,transmission\n\
         car,Toyota,Axio,2017,white,{vin1},{plate1},90000,used,petrol,Nakuru,-0.3031,36.08,155000000,KES,Family saloon,,5,automatic\n\
         motorcycle,Bajaj,Boxer,2025,red,{vin2},{},0,new,petrol,Kisumu,-0.09,34.76,16500000,KES,Boda,150,,\n\
         car,Nissan,Note,2016,blue,{vin3},{plate3},70000,used,petrol,Mombasa,-4.04,39.66,105000000,KES,,,5,manual\n\
         plane,Cessna,172,2010,white,{vin4},{plate4},1,used,petrol,Nakuru,-0.3,36.0,1,KES,,,,\n\
         car,Toyota,Vitz,2030,grey,BADVIN!,KDZ 999Z,abc,used,petrol,Nakuru,95,36.0,-5,KES,,,5,automatic\n\
         car,Toyota,Axio,2017,white,{vin1},KDY 111Y,90000,used,petrol,Nakuru,-0.3031,36.08,155000000,KES,Duplicate,,5,automatic\n",
        plate2.replacen("KD", "KMD", 1),
    )
}

async fn upload(
    app: &TestApp,
    token: &str,
    body: String,
    content_type: &str,
) -> (StatusCode, Value) {
    let resp = app
        .client
        .post(app.url("/api/v1/vehicles/import"))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn importing_a_sheet_twice_creates_no_duplicates() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let customer = app.customer().await;
    let csv = sheet();

    let (status, report) = upload(&app, &admin.token, csv.clone(), "text/csv").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        (
            report["rows"].as_u64(),
            report["imported"].as_u64(),
            report["failed"].as_u64()
        ),
        (Some(6), Some(3), Some(3)),
        "{report}"
    );
    let errors: Vec<(u64, String)> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["row"].as_u64().unwrap(),
                e["field"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(errors.contains(&(4, "type".into())), "{errors:?}");
    for field in ["year", "vin", "mileage_km", "latitude", "price_minor"] {
        assert!(errors.contains(&(5, field.into())), "{field}: {errors:?}");
    }
    assert!(errors.contains(&(6, "vin".into())), "{errors:?}");
    assert_eq!(vehicle_count(&app).await, 3);

    let (status, again) = upload(&app, &admin.token, csv.clone(), "text/csv").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            again["imported"].as_u64(),
            again["already_present"].as_u64()
        ),
        (Some(0), Some(3)),
        "{again}"
    );
    assert_eq!(vehicle_count(&app).await, 3);

    let (status, body) = upload(&app, &customer.token, csv.clone(), "text/csv").await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = upload(&app, &admin.token, csv, "application/json").await;
    assert_problem(
        status,
        &body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    );
    let (status, body) = upload(
        &app,
        &admin.token,
        "make,colour,wheels\nx,y,4\n".into(),
        "text/csv",
    )
    .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert_eq!(vehicle_count(&app).await, 3);
    app.stop().await;
}

#[tokio::test]
async fn the_cli_imports_with_a_report_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stock.csv");
    std::fs::write(&file, sheet()).unwrap();
    let data = dir.path().join("data");
    let run = || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_miliki"));
        cmd.args([
            "--data-dir",
            data.to_str().unwrap(),
            "vehicles",
            "import",
            file.to_str().unwrap(),
        ]);
        // This test is about the CLI on its embedded default, whatever the suite runs on.
        for var in [
            "MILIKI_VEHICLES_DATABASE_URL",
            "MILIKI_AMQP_URL",
            "MILIKI_REDIS_URL",
        ] {
            cmd.env_remove(var);
        }
        cmd.output().unwrap()
    };
    let first = run();
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        out.contains("3 imported") && out.contains("3 failed"),
        "{out}"
    );
    let report = std::fs::read_to_string(dir.path().join("stock.errors.csv")).unwrap();
    assert!(
        report.starts_with("row,field,message\n") && report.contains("4,type,"),
        "{report}"
    );
    let second = run();
    let out = String::from_utf8_lossy(&second.stdout);
    assert!(
        out.contains("0 imported") && out.contains("3 already present"),
        "{out}"
    );

    let db = miliki_platform::db::Db::connect(&format!(
        "sqlite://{}",
        data.join("vehicles.db").display()
    ))
    .await
    .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM vehicles")
        .fetch_one(db.reader())
        .await
        .unwrap();
    assert_eq!(n, 3);
    db.close().await;
}

#[tokio::test]
async fn a_sheet_larger_than_a_batch_lands_whole_with_one_event_per_vehicle() {
    // Batches of 600 rows: more than one batch, and more than one multi-row statement in a batch.
    let app = TestApp::spawn_with(|s| {
        s.extra
            .insert("vehicles_import_batch".into(), serde_json::json!(600));
    })
    .await;
    let admin = app.admin().await;
    let sheet = |n: u64| {
        let mut out = Vec::new();
        miliki_vehicles::import::write_csv(&mut out, miliki_vehicles::demo::generate(n, 7))
            .unwrap();
        String::from_utf8(out).unwrap()
    };
    // The first 700 rows, then the whole 1,300-row sheet: 700 already there, 600 new.
    let (status, report) = upload(&app, &admin.token, sheet(700), "text/csv").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["imported"], 700, "{report}");
    let (status, report) = upload(&app, &admin.token, sheet(1300), "text/csv").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        (
            report["imported"].as_u64(),
            report["already_present"].as_u64(),
            report["failed"].as_u64()
        ),
        (Some(600), Some(700), Some(0)),
        "{report}"
    );
    assert_eq!(vehicle_count(&app).await, 1300);

    // Every vehicle has its listed event, naming it, committed with it.
    let db = &vehicles(&app).db;
    let listed: Vec<String> = sqlx::query_scalar(
        "SELECT envelope FROM outbox WHERE event_type = 'vehicles.vehicle.listed.v1'",
    )
    .fetch_all(db.reader())
    .await
    .unwrap();
    let mut named: Vec<String> = listed
        .iter()
        .map(|e| {
            let e: Value = serde_json::from_str(e).unwrap();
            e["data"]["vehicle_id"].as_str().unwrap().to_owned()
        })
        .collect();
    named.sort();
    let mut ids: Vec<String> = sqlx::query_scalar("SELECT id FROM vehicles ORDER BY id")
        .fetch_all(db.reader())
        .await
        .unwrap();
    ids.sort();
    assert_eq!(named, ids);

    // Imported vehicles are found, by filters and by words, like listed ones.
    let (_, first) = app
        .get(
            "/api/v1/vehicles?limit=1&sort=price_asc",
            Some(&admin.token),
        )
        .await;
    let v = &first["items"][0];
    let word = v["model"]
        .as_str()
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_lowercase();
    let (status, found) = app
        .get(
            &format!("/api/v1/vehicles?q={word}&limit=100&facets=false"),
            Some(&admin.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert!(
        !found["items"].as_array().unwrap().is_empty(),
        "{word}: {found}"
    );
    let (_, detail) = app
        .get(
            &format!("/api/v1/vehicles/{}", v["id"].as_str().unwrap()),
            Some(&admin.token),
        )
        .await;
    assert_eq!(detail["price_minor"], v["price_minor"]);
    assert_eq!(detail["status"], "available");
    assert_eq!(detail["version"], 1);
    app.stop().await;
}
