//! The real `mqimg` binary's one-shot commands: `decode`, `check-config`, `print-default-config`.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::support::{fixture, fixture_path};

fn mqimg(args: &[&str]) -> Output {
    mqimg_with_env(args, &[])
}

fn mqimg_with_env(args: &[&str], vars: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mqimg"))
        .args(args)
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("running mqimg")
}

fn decode(file: &str, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let path = fixture_path(file);
    let mut args = vec!["decode"];
    args.extend_from_slice(extra);
    args.push(path.to_str().expect("a UTF-8 path"));
    let out = mqimg(&args);
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 stdout");
    assert_eq!(
        stdout.lines().count(),
        1,
        "{file}: not one line: {stdout:?}"
    );
    let record = serde_json::from_str(&stdout).expect("a JSON record");
    (
        out.status.code().expect("an exit code"),
        record,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn decode_prints_a_success_record_for_every_payload_form() {
    for (file, encoding) in [
        ("frames/photo-640x480.jpg", "raw"),
        ("encoded/photo-640x480.b64", "base64"),
        ("encoded/photo-640x480.mime.b64", "base64"),
        ("encoded/photo-640x480.urlsafe.b64", "base64"),
        ("encoded/photo-640x480.datauri.txt", "data-uri"),
        ("encoded/photo-640x480.json", "json"),
    ] {
        let (code, record, _) = decode(file, &[]);
        assert_eq!(code, 0, "{file}: {record}");
        assert_eq!(record["encoding"], encoding, "{file}");
        assert_eq!(record["width"], 640);
        assert_eq!(record["height"], 480);
        assert_eq!(record["topic"], serde_json::Value::Null);
        assert_eq!(record["path"], serde_json::Value::Null);
    }
}

#[test]
fn a_rejected_input_exits_1_with_the_failure_record_on_stdout_and_its_error_on_stderr() {
    let (code, record, stderr) = decode("bad/bomb-16384x16384.jpg", &[]);
    assert_eq!(code, 1);
    assert_eq!(record["stage"], "limits");
    let error = record["error"].as_str().expect("an error line");
    assert!(stderr.contains(error), "stderr {stderr:?} lacks {error:?}");
    let (code, record, _) = decode("bad/invalid-chars.b64", &[]);
    assert_eq!(code, 1);
    assert_eq!(record["stage"], "payload");
}

#[test]
fn forcing_an_encoding_that_does_not_fit_is_a_payload_error() {
    let (code, record, _) = decode("frames/photo-640x480.jpg", &["--encoding", "base64"]);
    assert_eq!(code, 1);
    assert_eq!(record["stage"], "payload");
}

#[test]
fn decode_reads_stdin() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mqimg"))
        .args(["decode", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("running mqimg");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&fixture("seed/seed-frame.b64"))
        .expect("writing stdin");
    let out = child.wait_with_output().expect("mqimg's output");
    assert!(out.status.success());
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON record");
    assert_eq!(record["width"], 100);
}

#[test]
fn out_writes_the_original_bytes_a_png_or_a_ppm() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let jpeg = fixture("frames/photo-640x480.jpg");

    let original = dir.path().join("frame.jpg");
    let (code, record, _) = decode(
        "encoded/photo-640x480.b64",
        &["--out", original.to_str().expect("utf-8")],
    );
    assert_eq!(code, 0);
    assert_eq!(record["path"], original.to_str().expect("utf-8"));
    assert_eq!(std::fs::read(&original).expect("the .jpg"), jpeg);

    let png = dir.path().join("frame.png");
    let (code, _, _) = decode(
        "frames/photo-640x480.jpg",
        &["--out", png.to_str().expect("utf-8")],
    );
    assert_eq!(code, 0);
    let decoded = image::open(&png).expect("a readable PNG").into_rgb8();
    assert_eq!(decoded.dimensions(), (640, 480));

    let ppm = dir.path().join("frame.ppm");
    let (code, _, _) = decode(
        "frames/photo-640x480.jpg",
        &["--out", ppm.to_str().expect("utf-8")],
    );
    assert_eq!(code, 0);
    let bytes = std::fs::read(&ppm).expect("the .ppm");
    let header = b"P6\n640 480\n255\n";
    assert!(bytes.starts_with(header));
    assert_eq!(bytes.len(), header.len() + 640 * 480 * 3);
    // The PNG holds exactly the pixels the PPM does: both are the decoded RGB buffer.
    assert_eq!(&bytes[header.len()..], decoded.as_raw().as_slice());

    let wrong = dir.path().join("frame-from-png.jpg");
    let out = mqimg(&[
        "decode",
        "--out",
        wrong.to_str().expect("utf-8"),
        fixture_path("frames/photo-640x480.png")
            .to_str()
            .expect("utf-8"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a PNG cannot be written as .jpg"
    );
    assert!(!wrong.exists());
}

#[test]
fn decode_applies_the_limits_of_a_config_file() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = dir.path().join("mqimg.toml");
    std::fs::write(&config, "[decode]\nmax_width = 639\n").expect("writing the config");
    let (code, record, _) = decode(
        "frames/photo-640x480.jpg",
        &["-c", config.to_str().expect("utf-8")],
    );
    assert_eq!(code, 1);
    assert_eq!(record["stage"], "limits");
    assert!(
        record["error"].as_str().expect("an error").contains("639"),
        "{record}"
    );
}

#[test]
fn usage_and_io_errors_exit_2() {
    assert_eq!(
        mqimg(&["decode", "--encoding", "gif"]).status.code(),
        Some(2)
    );
    let out = mqimg(&["decode", "/nonexistent/frame.jpg"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/frame.jpg"));
}

#[test]
fn check_config_validates_and_masks_passwords() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[broker]\nusername = \"cam\"\npassword = \"hunter2\"\n",
    )
    .expect("write");
    let out = mqimg(&["check-config", "-c", good.to_str().expect("utf-8")]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("***") && !stdout.contains("hunter2"),
        "{stdout}"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[broker]\nkeep_alive = 5\n").expect("write");
    let out = mqimg(&["check-config", "-c", bad.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("keep_alive") && stderr.contains("MQIMG__BROKER__KEEP_ALIVE"),
        "{stderr}"
    );
}

#[test]
fn check_config_applies_the_environment_including_subscriptions() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("empty.toml");
    std::fs::write(&path, "").expect("write");
    let path = path.to_str().expect("utf-8");
    let out = mqimg_with_env(
        &["check-config", "-c", path],
        &[
            ("MQIMG__SUBSCRIPTIONS__0__TOPIC", "cams/+/jpeg"),
            ("MQIMG__SUBSCRIPTIONS__0__QOS", "0"),
            ("MQIMG__SUBSCRIPTIONS__0__ENCODING", "base64"),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "[[subscriptions]]\ntopic = \"cams/+/jpeg\"\nqos = 0\nencoding = \"base64\"\n"
        ),
        "{stdout}"
    );

    // `verbose` would otherwise be taken for a target name and silence every log line.
    let out = mqimg_with_env(
        &["check-config", "-c", path],
        &[("MQIMG__LOG__LEVEL", "verbose")],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("log.level (MQIMG__LOG__LEVEL)")
            && stderr.contains("error, warn, info, debug, trace, off"),
        "{stderr}"
    );

    let out = mqimg_with_env(
        &["check-config", "-c", path],
        &[("MQIMG__BROKER__URLL", "mqtt://broker")],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown key broker.urll (MQIMG__BROKER__URLL): did you mean url?"),
        "{stderr}"
    );
}

#[test]
fn the_printed_default_config_is_valid_as_it_stands() {
    let out = mqimg(&["print-default-config"]);
    assert!(out.status.success());
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("default.toml");
    std::fs::write(&path, &out.stdout).expect("write");
    let out = mqimg(&["check-config", "-c", path.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_config_refuses_a_template_whose_records_come_back_as_frames() {
    // Issue 8, finding 5: this config passed, then one bad frame made 206 messages in 5 s.
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("loop.toml");
    std::fs::write(
        &path,
        "[[subscriptions]]\ntopic = \"cameras/#\"\n[output]\nerrors_topic = \"{topic}/error\"\n",
    )
    .expect("write");
    let out = mqimg(&["check-config", "-c", path.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "output.errors_topic (MQIMG__OUTPUT__ERRORS_TOPIC): \"{topic}/error\" feeds records back \
             into the subscriptions: a frame on \"cameras/x\" gives a record on \"cameras/x/error\", \
             which \"cameras/#\" matches"
        ),
        "{stderr}"
    );
}

/// `decode.backend` through the environment: with the `turbojpeg` feature, libjpeg-turbo gives the
/// same records as zune-jpeg (refusals, warnings, orientation); without it, the key is refused by name.
#[test]
fn the_jpeg_backend_is_chosen_by_config_and_gives_the_same_records() {
    let run = |file: &str, backend: &str| {
        let path = fixture_path(file);
        let out = mqimg_with_env(
            &["decode", path.to_str().expect("a UTF-8 path")],
            &[("MQIMG__DECODE__BACKEND", backend)],
        );
        (out.status.code(), out.stdout, out.stderr)
    };
    if !cfg!(feature = "turbojpeg") {
        let (code, _, stderr) = run("frames/photo-640x480.jpg", "libjpeg-turbo");
        assert_ne!(code, Some(0));
        let stderr = String::from_utf8_lossy(&stderr);
        assert!(stderr.contains("`turbojpeg` cargo feature"), "{stderr}");
        return;
    }
    for file in [
        "frames/photo-640x480.jpg",
        "variants/exif-orientation6-1280x720.jpg",
        "bad/corrupt-entropy.jpg",
        "bad/truncated-half.jpg",
        "bad/bomb-16384x16384.jpg",
    ] {
        let records = ["zune", "libjpeg-turbo"].map(|backend| {
            let (code, stdout, _) = run(file, backend);
            let record: serde_json::Value = serde_json::from_slice(&stdout).expect("a JSON record");
            (code, record)
        });
        let [(zune_code, zune), (turbo_code, turbo)] = records;
        assert_eq!(zune_code, turbo_code, "{file}");
        for key in [
            "stage",
            "error",
            "width",
            "height",
            "orientation",
            "warnings",
            "color",
        ] {
            assert_eq!(zune[key], turbo[key], "{file}: {key}");
        }
    }
}
