//! The fake server over real HTTP on 127.0.0.1: both chat dialects,
//! injected faults with `Retry-After`, canned responses in order,
//! statistics, and the binary's listening line.

use std::io::BufRead;

fn server(overrides: serde_json::Value) -> chaosllm::RunningServer {
    let mut value = serde_json::json!({"server": {"host": "127.0.0.1", "port": 0}});
    chaosllm::config::merge(&mut value, overrides);
    chaosllm::start(chaosllm::Config::from_value(value, "test").expect("config")).expect("start")
}

fn chat(url: &str) -> reqwest::blocking::Response {
    reqwest::blocking::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(r#"{"model": "m1", "messages": [{"role": "user", "content": "hello there"}]}"#)
        .send()
        .expect("request")
}

#[test]
fn both_dialects_answer_and_statistics_count_them() {
    let running = server(serde_json::json!({"response": {"mode": "echo"}}));
    let openai: serde_json::Value = chat(&format!("{}/chat/completions", running.base_url())).json().expect("json");
    assert_eq!(openai["choices"][0]["message"]["content"], "hello there");
    assert_eq!(openai["model"], "m1");
    let azure_url = format!("http://{}/openai/deployments/dep-7/chat/completions?api-version=2024-10-21", running.addr());
    let azure: serde_json::Value = chat(&azure_url).json().expect("json");
    assert_eq!(azure["model"], "dep-7", "Azure answers with the deployment");
    let health: serde_json::Value =
        reqwest::blocking::get(format!("http://{}/health", running.addr())).expect("health").json().expect("json");
    assert_eq!(health["status"], "ok");
    let stats: serde_json::Value =
        reqwest::blocking::get(format!("http://{}/admin/stats", running.addr())).expect("stats").json().expect("json");
    assert_eq!(stats["requests"], 2);
    assert_eq!(stats["outcomes"]["success"], 2);
}

#[test]
fn capacity_faults_carry_retry_after_and_presets_come_in_order() {
    let running = server(serde_json::json!({"error_injection": {"rate_limit_pct": 100, "retry_after_sec": [3, 3]}}));
    let refused = chat(&format!("{}/chat/completions", running.base_url()));
    assert_eq!(refused.status().as_u16(), 429);
    assert_eq!(refused.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("3"));

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("responses.jsonl");
    std::fs::write(&file, "{\"content\": \"first\"}\n{\"content\": \"second\"}\n").expect("write");
    let running =
        server(serde_json::json!({"response": {"mode": "preset", "preset": {"file": file, "selection": "sequential"}}}));
    let contents: Vec<String> = (0..3)
        .map(|_| {
            let body: serde_json::Value = chat(&format!("{}/chat/completions", running.base_url())).json().expect("json");
            body["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(contents, ["first", "second", "first"]);
}

#[test]
fn malformed_answers_are_malformed() {
    let running = server(serde_json::json!({"error_injection": {"invalid_json_pct": 100}}));
    let answer = chat(&format!("{}/chat/completions", running.base_url()));
    assert_eq!(answer.status().as_u16(), 200);
    let text = answer.text().expect("text");
    assert!(serde_json::from_str::<serde_json::Value>(&text).is_err(), "{text}");
    let running = server(serde_json::json!({"error_injection": {"connection_reset_pct": 100}}));
    let dropped = reqwest::blocking::Client::new()
        .post(format!("{}/chat/completions", running.base_url()))
        .body(r#"{"messages": []}"#)
        .send()
        .and_then(reqwest::blocking::Response::text);
    assert!(dropped.is_err(), "the connection is dropped mid-answer");
}

#[test]
fn unknown_keys_and_presets_are_refused() {
    let error = chaosllm::Config::from_value(serde_json::json!({"latency": {"base": 3}}), "f.yaml").expect_err("unknown key");
    assert!(error.to_string().contains("unknown field `base`"), "{error}");
    assert!(chaosllm::config::preset("wild").is_err());
    for name in chaosllm::PRESETS {
        let value = chaosllm::config::preset(name).expect("preset");
        assert!(chaosllm::Config::from_value(value, name).is_ok(), "{name}");
    }
}

#[test]
fn the_binary_prints_where_it_listens() {
    let binary = env!("CARGO_BIN_EXE_elspeth-chaosllm");
    let mut child = std::process::Command::new(binary)
        .args(["serve", "--preset", "gentle", "--port", "0", "--host", "127.0.0.1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line).expect("read");
    let addr = line.trim().rsplit("http://").next().unwrap_or_default().to_owned();
    let health = reqwest::blocking::get(format!("http://{addr}/health")).map(|r| r.status().as_u16());
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.starts_with("elspeth-chaosllm listening on http://127.0.0.1:"), "{line}");
    assert_eq!(health.ok(), Some(200));
}

#[test]
fn the_web_server_serves_articles_redirects_and_ssrf_bait() {
    let web = |faults: serde_json::Value| {
        let mut value = chaosllm::web::web_preset("silent").expect("preset");
        chaosllm::config::merge(&mut value, serde_json::json!({"server": {"port": 0}, "error_injection": faults}));
        chaosllm::web::start_web(chaosllm::web::WebConfig::from_value(value, "test").expect("config")).expect("start")
    };
    let no_redirects = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let running = web(serde_json::json!({}));
    let page = no_redirects.get(format!("http://{}/articles/annual-report", running.addr())).send().expect("get");
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().expect("text").contains("<h1>annual report</h1>"));
    let hop = no_redirects.get(format!("http://{}/redirect/2/x", running.addr())).send().expect("get");
    assert_eq!(hop.status().as_u16(), 302);
    assert_eq!(hop.headers().get("location").and_then(|v| v.to_str().ok()), Some("/redirect/1/x"));
    let bait = web(serde_json::json!({"ssrf_redirect_pct": 100}));
    let hop = no_redirects.get(format!("http://{}/articles/x", bait.addr())).send().expect("get");
    assert_eq!(hop.headers().get("location").and_then(|v| v.to_str().ok()), Some("http://169.254.169.254/latest/meta-data/"));
}
