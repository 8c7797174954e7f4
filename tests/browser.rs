//! The live page of `poirot demo` in a real browser: Debian's chromium, driven by
//! playwright-core (tests/browser/page.mjs). The demo runs with
//! SIMULATE_S3_BEHAVIOUR=ERROR, so every sandbox result is lost: the page must draw
//! that destination as nobody's, fill the RED table and open an anomaly's
//! waterfall on a click. The screenshot it keeps is target/test-artifacts/page.png.
//!
//! `make test` installs what it needs (scripts/browser/setup.sh) and runs it; by hand:
//! `scripts/browser/setup.sh && cargo test --test browser -- --ignored`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs chromium and tests/browser/node_modules: `make test` installs them"]
fn the_page_shows_the_lost_destination_and_an_anomalys_waterfall_in_a_browser() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let _demo = Demo(
        Command::new(env!("CARGO_BIN_EXE_poirot"))
            .args(["demo", "--listen", &format!("127.0.0.1:{port}"), "--duration", "120"])
            .env("SIMULATE_S3_BEHAVIOUR", "ERROR")
            .env("PUBLISHER_RATE", "20")
            .env("POIROT_ASSEMBLY__INACTIVITY_GAP", "3s")
            .env("POIROT_ASSEMBLY__OUT_OF_ORDERNESS", "200ms")
            .env("POIROT_UI__JAEGER_URL", "http://127.0.0.1:16686")
            .env("POIROT_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("demo starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the demo does not listen on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let artifacts = root.join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let screenshot = artifacts.join("page.png");
    let _ = std::fs::remove_file(&screenshot);
    let out = Command::new("node")
        .arg(root.join("tests/browser/page.mjs"))
        .arg(format!("http://127.0.0.1:{port}/"))
        .arg(&screenshot)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&screenshot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "{} bytes", png.len());
}
