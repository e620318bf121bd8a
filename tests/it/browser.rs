//! The live view in a real browser (issue 12): Debian's `chromium`, driven by `tests/browser/live.mjs`
//! (playwright-core on node), against this daemon and a private broker. The script publishes frames
//! and checks what the browser decoded, pixel by pixel; screenshots land in `target/tmp/browser/`.
//!
//! `MQIMG_UPDATE_SCREENSHOT=1` also writes the README's picture, `docs/gallery.jpg`.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;

use image::codecs::jpeg::JpegEncoder;
use image::{ImageFormat, Rgb, RgbImage};
use serde_json::json;

use crate::support::Broker;
use crate::support::daemon::{Daemon, settings};

const INSTALL: &str = "install them with `apt-get update && apt-get install -y chromium nodejs npm` \
                       (or run .ci/run, which does)";

/// A 320x240 frame of four flat quadrants (top left, top right, bottom left, bottom right).
fn quadrants(colours: [[u8; 3]; 4], format: ImageFormat, path: &Path) -> serde_json::Value {
    let image = RgbImage::from_fn(320, 240, |x, y| {
        Rgb(colours[usize::from(x >= 160) + 2 * usize::from(y >= 120)])
    });
    let mut bytes = Cursor::new(Vec::new());
    match format {
        ImageFormat::Jpeg => image
            .write_with_encoder(JpegEncoder::new_with_quality(&mut bytes, 95))
            .expect("encoding a JPEG"),
        _ => image.write_to(&mut bytes, format).expect("encoding a PNG"),
    }
    std::fs::write(path, bytes.into_inner()).expect("writing a frame");
    json!({ "file": path, "colours": colours })
}

fn chromium() -> PathBuf {
    let path = std::env::var_os("MQIMG_CHROMIUM")
        .map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from);
    assert!(
        path.exists(),
        "the browser test needs Debian's chromium at {}: {INSTALL}",
        path.display()
    );
    path
}

/// `tests/browser/`, with playwright-core installed (`npm ci` from its lock file when missing).
fn driver() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "the browser test needs node (20 or later): {INSTALL}"
    );
    if !dir.join("node_modules/playwright-core").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "cannot install playwright-core: run `npm ci` in {} ({INSTALL})",
            dir.display()
        );
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gallery_and_a_topic_page_show_each_new_frame_in_chromium() {
    let (chromium, driver) = (chromium(), driver());
    let broker = Broker::new();
    let work = tempfile::tempdir().expect("a temp dir");
    let daemon = Daemon::start(settings(
        &broker.url(),
        &["cams/#"],
        &work.path().join("out"),
    ))
    .await;

    let frame = |name: &str| work.path().join(name);
    let frames = json!({
        "a": quadrants([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]], ImageFormat::Jpeg, &frame("a.jpg")),
        "b": quadrants([[255, 255, 0], [0, 255, 255], [255, 0, 255], [0, 0, 0]], ImageFormat::Jpeg, &frame("b.jpg")),
        "c": quadrants([[255, 128, 0], [128, 0, 255], [128, 128, 128], [0, 128, 128]], ImageFormat::Png, &frame("c.png")),
        "bad": { "file": crate::support::fixture_path("bad/truncated-half.jpg") },
    });
    let fixture = |name: &str| crate::support::fixture_path(name);
    let gallery = json!([
        [
            "cams/front-door",
            fixture("frames/photo-640x480.jpg"),
            "raw"
        ],
        ["cams/yard", fixture("frames/photo-1280x720.jpg"), "base64"],
        ["cams/garage", fixture("frames/photo-640x480.png"), "raw"],
        ["cams/street", fixture("frames/photo-1920x1080.jpg"), "json"],
        ["cams/garage", fixture("bad/truncated-half.jpg"), "raw"],
    ]);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    let docs = std::env::var_os("MQIMG_UPDATE_SCREENSHOT")
        .is_some_and(|v| v == "1")
        .then(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/gallery.jpg"));
    if let Some(docs) = docs.as_deref().and_then(Path::parent) {
        std::fs::create_dir_all(docs).expect("the docs folder");
    }
    let plan = json!({
        "base": format!("http://{}", daemon.http),
        "broker": broker.url(),
        "mqimg": env!("CARGO_BIN_EXE_mqimg"),
        "chromium": chromium,
        "topic": "cams/front door/ünïcode",
        "frames": frames,
        "gallery": gallery,
        "out": out,
        "docs": docs,
    });

    let run = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("live.mjs")
            .current_dir(driver)
            .env("MQIMG_BROWSER_PLAN", plan.to_string())
            .output()
            .expect("running node")
    })
    .await
    .expect("the browser run");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(
        run.status.success(),
        "the browser test failed (screenshots in {}):\n{stdout}\n{stderr}",
        out.display()
    );
    daemon.stop().await;
}
