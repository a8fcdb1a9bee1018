//! `elspeth serve` end to end: the HTTP contract (read-only, 405 on writes,
//! 404 for what is not there, a bearer token off loopback and when given),
//! and a real headless Chromium driven over WebDriver through the runs
//! page, a run, its rows, a forked row's lineage, a token and the search
//! box, with a screenshot of each page kept under `target/screenshots/`.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use fantoccini::{ClientBuilder, Locator};
use tests::{elspeth_binary, elspeth_in, output_text, run_example, workspace};

/// A running `elspeth serve` on an ephemeral loopback port; killed when dropped.
struct Served {
    child: Child,
    base: String,
}

impl Served {
    fn start(dir: &Path, database: &str, extra: &[&str]) -> Served {
        let mut child = Command::new(elspeth_binary())
            .current_dir(dir)
            .args(["serve", "--database", database, "--bind", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("elspeth serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("the listening line");
        let base = line.split_whitespace().find(|w| w.starts_with("http://")).expect("a URL").trim_end_matches('/').to_owned();
        Served { child, base }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A chromedriver on an ephemeral loopback port; killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    /// Starts chromedriver, or `None` when it is not installed and the browser
    /// test is not required (`.ci/run` installs it and requires it).
    fn start() -> Option<Driver> {
        let spawned = Command::new("chromedriver").arg("--port=0").stdout(Stdio::piped()).stderr(Stdio::null()).spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(error) if std::env::var_os("ELSPETH_REQUIRE_BROWSER").is_none() => {
                eprintln!("NOTICE: chromedriver not found ({error}); skipping the browser part (apt-get install chromium chromium-driver)");
                return None;
            }
            Err(error) => panic!("ELSPETH_REQUIRE_BROWSER is set but chromedriver cannot start: {error}"),
        };
        let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        let port = loop {
            line.clear();
            assert!(reader.read_line(&mut line).expect("chromedriver output") > 0, "chromedriver exited before it started");
            if let Some(rest) = line.split("on port ").nth(1).filter(|_| line.contains("started successfully")) {
                break rest.trim().trim_end_matches('.').to_owned();
            }
        };
        Some(Driver { child, url: format!("http://127.0.0.1:{port}") })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fork_landscape() -> (tempfile::TempDir, String) {
    let (dir, output) = run_example("fork_coalesce", &[]);
    assert!(output.status.success(), "{}", output_text(&output));
    let url = format!("sqlite:///{}", dir.path().join("examples/fork_coalesce/runs/audit.db").display());
    (dir, url)
}

fn status(client: &reqwest::blocking::Client, request: reqwest::blocking::RequestBuilder) -> u16 {
    let _ = client;
    request.send().expect("the server answers").status().as_u16()
}

#[test]
fn the_explorer_is_read_only_and_guarded() {
    let (dir, url) = fork_landscape();
    let served = Served::start(dir.path(), &url, &[]);
    let http = reqwest::blocking::Client::new();
    let runs = http.get(format!("{}/", served.base)).send().expect("runs page").text().expect("html");
    let run = runs.split("href=\"/runs/").nth(1).and_then(|r| r.split('"').next()).expect("a run link").to_owned();
    for path in [
        "/",
        &format!("/runs/{run}"),
        &format!("/runs/{run}/rows"),
        &format!("/runs/{run}/rows/0"),
        &format!("/runs/{run}/batches"),
    ] {
        assert_eq!(status(&http, http.get(format!("{}{path}", served.base))), 200, "{path}");
        for method in [reqwest::Method::POST, reqwest::Method::PUT, reqwest::Method::DELETE] {
            assert_eq!(status(&http, http.request(method.clone(), format!("{}{path}", served.base))), 405, "{method} {path}");
        }
    }
    assert_eq!(status(&http, http.get(format!("{}/runs/{run}/rows/99", served.base))), 404);
    assert_eq!(status(&http, http.get(format!("{}/runs/{}", served.base, "0".repeat(32)))), 404);
    assert_eq!(status(&http, http.get(format!("{}/tokens/{}", served.base, "0".repeat(32)))), 404);
    let export = http.get(format!("{}/runs/{run}/export.jsonl", served.base)).send().expect("export");
    assert_eq!(export.status().as_u16(), 200);
    let export = export.text().expect("export body");
    assert!(export.lines().count() > 30 && export.contains("\"record_type\":\"manifest\""), "a whole export");
    drop(served);

    let refused = elspeth_in(dir.path(), &["serve", "--database", &url, "--bind", "0.0.0.0:0"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(output_text(&refused).contains("without --token"), "{}", output_text(&refused));

    let guarded = Served::start(dir.path(), &url, &["--token", "s3cret-token"]);
    assert_eq!(status(&http, http.get(format!("{}/", guarded.base))), 401);
    assert_eq!(status(&http, http.get(format!("{}/", guarded.base)).bearer_auth("wrong")), 401);
    assert_eq!(status(&http, http.get(format!("{}/", guarded.base)).bearer_auth("s3cret-token")), 200);
}

fn screenshots() -> PathBuf {
    let dir = workspace().join("target").join("screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir
}

#[test]
fn an_auditor_follows_a_forked_row_in_a_real_browser() {
    let Some(driver) = Driver::start() else { return };
    let (dir, url) = fork_landscape();
    let served = Served::start(dir.path(), &url, &[]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"]}),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new()).capabilities(capabilities).connect(&driver.url).await.expect("a browser session");
        let shots = screenshots();
        let shot = |name: &'static str| {
            let client = client.clone();
            let path = shots.join(name);
            async move { std::fs::write(path, client.screenshot().await.expect("screenshot")).expect("write screenshot") }
        };

        client.goto(&format!("{}/", served.base)).await.expect("runs page");
        let link = client.find(Locator::Css("#runs a")).await.expect("a run link");
        let run_id = link.text().await.expect("text");
        assert!(client.find(Locator::Css("#runs")).await.expect("table").text().await.expect("text").contains("routed 5"));
        shot("runs.png").await;

        link.click().await.expect("follow the run");
        client.wait().for_element(Locator::Css("svg.dag")).await.expect("the DAG is drawn");
        let nodes = client.find(Locator::Css("svg.dag")).await.expect("svg").text().await.expect("text");
        for name in ["csv", "preprocess", "fork_gate", "merge_results", "route_output", "output"] {
            assert!(nodes.contains(name), "{name} in the graph: {nodes}");
        }
        let facts = client.find(Locator::Css("#facts")).await.expect("facts").text().await.expect("text");
        assert!(facts.contains("completed") && facts.contains("rows 5"), "{facts}");
        shot("run.png").await;

        let row_number = client.find(Locator::Css("form.row-search input[name=q]")).await.expect("the row box");
        row_number.send_keys("3").await.expect("type a row number");
        client.find(Locator::Css("form.row-search button")).await.expect("go").click().await.expect("go to row 3");
        let third = client.wait().for_element(Locator::Css("#lineage")).await.expect("lineage").text().await.expect("text");
        assert!(third.contains("source row 3"), "{third}");
        client.goto(&format!("{}/runs/{run_id}", served.base)).await.expect("back to the run");
        client.find(Locator::LinkText("source rows")).await.expect("rows link").click().await.expect("rows");
        client.find(Locator::LinkText("0")).await.expect("row 0").click().await.expect("row 0");
        let lineage = client.wait().for_element(Locator::Css("#lineage")).await.expect("lineage").text().await.expect("text");
        for expected in ["ROUTED to sink output", "forked onto branch path_a", "forked onto branch path_b", "merge_results", "source row 0"] {
            assert!(lineage.contains(expected), "{expected:?} in {lineage}");
        }
        assert!(client.current_url().await.expect("url").path().ends_with(&format!("/runs/{run_id}/rows/0")));
        shot("row.png").await;

        let output = client.find(Locator::Css("main p a[href^='/tokens/']")).await.expect("an output link");
        let token = output.text().await.expect("token id");
        output.click().await.expect("follow the token");
        let story = client.wait().for_element(Locator::Css("#lineage")).await.expect("lineage").text().await.expect("text");
        assert!(story.contains(&token), "{story}");
        shot("token.png").await;

        let search = client.find(Locator::Css("input[name=q]")).await.expect("search box");
        search.send_keys(&run_id).await.expect("type");
        client.find(Locator::Css("header button")).await.expect("find").click().await.expect("search");
        client.wait().for_element(Locator::Css("svg.dag")).await.expect("the run again");
        assert!(client.current_url().await.expect("url").path().ends_with(&format!("/runs/{run_id}")));
        client.close().await.expect("the browser closes");
    });
    drop(served);
}

#[test]
fn a_calls_request_and_response_are_shown_from_the_payload_store() {
    let server = tests::chaos_server(serde_json::json!({}));
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("input.csv"), "id,text\n0,the first row\n1,the second row\n").expect("input");
    std::fs::write(dir.path().join("settings.yaml"), crate::llm::pipeline(&server.base_url(), 1, "")).expect("settings");
    let output = Command::new(elspeth_binary())
        .current_dir(dir.path())
        .env("ELSPETH_FINGERPRINT_KEY", "a-test-fingerprint-key")
        .args(["run", "--settings", "settings.yaml", "--execute"])
        .output()
        .expect("elspeth runs");
    assert!(output.status.success(), "{}", output_text(&output));
    let database = format!("sqlite:///{}", dir.path().join("audit.db").display());
    let served = Served::start(dir.path(), &database, &["--payload-dir", "payloads"]);
    let http = reqwest::blocking::Client::new();
    let get = |path: &str| http.get(format!("{}{path}", served.base)).send().expect("page").text().expect("html");
    let runs = get("/");
    let run = runs.split("href=\"/runs/").nth(1).and_then(|r| r.split('"').next()).expect("a run link").to_owned();
    let row = get(&format!("/runs/{run}/rows/1"));
    assert!(row.contains("ask #0 llm success"), "{row}");
    let call = row.split("href=\"/calls/").nth(1).and_then(|r| r.split('"').next()).expect("a call link").to_owned();
    let page = get(&format!("/calls/{call}"));
    let request = page.split("id=\"request\">").nth(1).and_then(|r| r.split("</pre>").next()).expect("request");
    let response = page.split("id=\"response\">").nth(1).and_then(|r| r.split("</pre>").next()).expect("response");
    assert!(request.contains("Echo the second row"), "the prompt as sent: {request}");
    assert!(!request.contains(crate::llm::SECRET), "the API key is never shown");
    assert!(response.contains("the second row"), "the answer as received: {response}");
    assert!(page.contains("made live"));
}

#[test]
fn batches_are_listed_with_their_trigger_and_members() {
    let (dir, output) = run_example("batch_aggregation", &[]);
    assert!(output.status.success(), "{}", output_text(&output));
    let database = format!("sqlite:///{}", dir.path().join("examples/batch_aggregation/runs/audit.db").display());
    let served = Served::start(dir.path(), &database, &[]);
    let http = reqwest::blocking::Client::new();
    let get = |path: &str| http.get(format!("{}{path}", served.base)).send().expect("page").text().expect("html");
    let runs = get("/");
    let run = runs.split("href=\"/runs/").nth(1).and_then(|r| r.split('"').next()).expect("a run link").to_owned();
    let page = get(&format!("/runs/{run}/batches"));
    let table = page.split("<table id=\"batches\">").nth(1).expect("a batch table");
    let rows: Vec<&str> = table.split("<tr>").skip(2).collect();
    assert!(!rows.is_empty(), "{page}");
    for row in &rows {
        assert!(row.contains("<td>batch_totals</td><td>completed</td><td>count reached 5</td><td>0</td><td>5</td>"), "{row}");
    }
    assert!(get(&format!("/runs/{run}")).contains("count reached 5"), "the run page shows the first batches");
}
