//! The firmware image (`firmware/`, issue 27) boots on an emulated
//! Cortex-M4 (`qemu-system-arm -machine mps2-an386`) and serves the real
//! `p2pa` CLI over its UART, which QEMU exposes as a TCP socket on
//! loopback: `submit` completes hash and echo tasks against it, and `p2pa
//! verify` checks the receipts. Needs `qemu-system-arm` and the image
//! (`.ci/run` installs the one and builds the other; `P2PA_FIRMWARE_ELF`
//! names another image); without them it says `SKIPPED: why`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use p2pa_tests::{p2pa, p2pa_local, scratch, stderr, stdout, unique_port};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

/// QEMU running the image; killed when dropped.
struct Board(Child);

impl Drop for Board {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn image() -> Result<PathBuf, String> {
    let elf = std::env::var_os("P2PA_FIRMWARE_ELF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../firmware/target/thumbv7em-none-eabihf/release/p2pa-firmware")
        });
    if !elf.exists() {
        return Err(format!(
            "no firmware image at {} (build it: cd firmware && cargo build --release)",
            elf.display()
        ));
    }
    let qemu = Command::new("qemu-system-arm")
        .arg("--version")
        .stdout(Stdio::null())
        .status();
    if !qemu.is_ok_and(|s| s.success()) {
        return Err("qemu-system-arm is not installed (apt-get install qemu-system-arm)".into());
    }
    Ok(elf)
}

#[test]
fn the_firmware_boots_under_qemu_and_serves_the_cli_with_verifiable_receipts() {
    let elf = match image() {
        Ok(elf) => elf,
        Err(why) => {
            p2pa_tests::skip("P2PA_REQUIRE_FIRMWARE", &why);
            return;
        }
    };
    let dir = scratch("firmware");
    let log = dir.join("uart1.log");
    let uart = unique_port();
    let child = Command::new("qemu-system-arm")
        .args(["-machine", "mps2-an386", "-nographic", "-monitor", "none"])
        .arg("-serial")
        .arg(format!("tcp:127.0.0.1:{uart},server,nowait"))
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(&elf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn qemu-system-arm");
    let _board = Board(child);
    // It boots and says who it is on its log UART.
    let end = Instant::now() + Duration::from_secs(20);
    let id = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        // Whole lines only: QEMU may have written part of one.
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        if let Some(id) = whole
            .lines()
            .find_map(|l| l.strip_prefix("p2pa firmware: node "))
            .and_then(|rest| rest.split_whitespace().next())
        {
            break id.to_owned();
        }
        assert!(
            Instant::now() < end,
            "no boot line in {}: {text:?}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(id.len(), 64, "{id}");
    let peer = format!("127.0.0.1:{uart}");
    let port = unique_port();
    let submit = |kind: &str, input: &str| -> (Value, String) {
        let args = [
            "submit", "--kind", kind, "--input", input, "--peer", &peer, "--json",
        ];
        let out = p2pa_local(port, &args, T);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        (serde_json::from_str(text.trim()).unwrap(), text)
    };
    let (hash, hash_json) = submit("hash", "hello");
    assert_eq!(hash["status"], "completed", "{hash}");
    assert_eq!(
        hash["output"],
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
    assert_eq!(hash["worker"], id.as_str());
    let (echo, echo_json) = submit("echo", "hello from a Cortex-M4");
    assert_eq!(echo["output"], "hello from a Cortex-M4", "{echo}");
    // The receipts verify offline, and a tampered one does not.
    let receipts = dir.join("receipts.jsonl");
    std::fs::write(
        &receipts,
        format!("{}\n{}\n", hash_json.trim(), echo_json.trim()),
    )
    .unwrap();
    let out = p2pa(&["verify", receipts.to_str().unwrap()], T);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("2 receipt(s) verified, 0 failed"),
        "{}",
        stderr(&out)
    );
    let forged = hash_json.replace("2cf24dba", "2cf24dbb");
    std::fs::write(&receipts, forged).unwrap();
    let out = p2pa(&["verify", receipts.to_str().unwrap()], T);
    assert_ne!(out.status.code(), Some(0), "{}", stdout(&out));
    // Two sessions, each logged with its tasks and the stack it used (the
    // second line comes once the firmware has read the CLI's goodbye).
    let end = Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    while Instant::now() < end && !text.contains("session 2: 1 completed") {
        std::thread::sleep(Duration::from_millis(50));
        text = std::fs::read_to_string(&log).unwrap_or_default();
    }
    assert!(text.contains("session 2: 1 completed"), "{text}");
}
