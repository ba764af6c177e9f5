//! `p2pa verify`: checks the receipts kept in a batch journal or in
//! `p2pa submit --json` output, offline. A receipt is the worker's signed
//! result frame kept as its fields; re-encoding them gives the signed bytes
//! back, so its signature proves, with no network and no key but the
//! worker's public one, what that worker answered to that requester.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use p2pa_node::core::{verify_receipt, ReceiptCheck};
use p2pa_node::hex::{hex, parse_hex, parse_hex32};
use p2pa_node::protocol::{FailReason, NodeId, Receipt, SessionId, Signature64, TaskStatus};
use serde_json::{json, Value};

use crate::{exit, CliError, CliResult};

/// The receipt as JSON: every field [`receipt_from_json`] needs to check it
/// alone. `output` is the task's output; an output that travelled inside
/// the result frame is kept in hex (the signature covers its bytes).
pub fn receipt_json(r: &Receipt, output: &[u8]) -> Value {
    let mut v = json!({
        "task_id": r.task_id.to_string(),
        "requester": r.requester.to_string(),
        "worker": r.worker.to_string(),
        "status": r.status.name(),
        "model": hex(&r.model),
        "input": hex(&r.input),
        "output": hex(&r.output),
        "output_blob_len": r.blob_len,
        "seq": r.seq.to_string(),
        "session": [hex(&r.session.initiator), hex(&r.session.responder)],
        "signature": hex(&r.signature.0),
    });
    if let Some(reason) = r.reason {
        v["reason"] = json!(reason.name());
    }
    if r.blob_len.is_none() {
        v["output_inline_hex"] = json!(hex(output));
    }
    v
}

/// A receipt read back from [`receipt_json`], with the inline output if
/// it has one.
pub fn receipt_from_json(v: &Value) -> Result<(Receipt, Option<Vec<u8>>), String> {
    let text = |k: &str| v[k].as_str().ok_or_else(|| format!("no \"{k}\""));
    let h32 =
        |k: &str| parse_hex32(text(k)?).ok_or_else(|| format!("\"{k}\" is not 64 hex digits"));
    let num = |k: &str| {
        text(k)?
            .parse::<u64>()
            .map_err(|_| format!("\"{k}\" is not a 64-bit number"))
    };
    let status = v["status"]
        .as_str()
        .and_then(TaskStatus::from_name)
        .ok_or("\"status\" is not a task status")?;
    let nonce = |i: usize| {
        v["session"][i]
            .as_str()
            .and_then(parse_hex32)
            .ok_or_else(|| "\"session\" is not two 64-hex-digit nonces".to_owned())
    };
    let signature: [u8; 64] = text("signature")
        .ok()
        .and_then(parse_hex)
        .and_then(|b| b.try_into().ok())
        .ok_or("\"signature\" is not 128 hex digits")?;
    let blob_len = match &v["output_blob_len"] {
        Value::Null => None,
        n => Some(n.as_u64().ok_or("\"output_blob_len\" is not a number")?),
    };
    let inline = match v["output_inline_hex"].as_str() {
        Some(t) => Some(parse_hex(t).ok_or("\"output_inline_hex\" is not hex")?),
        None => None,
    };
    let reason = match &v["reason"] {
        Value::Null => None,
        r => Some(
            (r.as_str())
                .and_then(FailReason::from_name)
                .ok_or("\"reason\" is not a failure reason")?,
        ),
    };
    let receipt = Receipt {
        task_id: num("task_id")?,
        requester: NodeId(h32("requester")?),
        worker: NodeId(h32("worker")?),
        status,
        reason,
        model: h32("model")?,
        input: h32("input")?,
        output: h32("output")?,
        blob_len,
        seq: num("seq")?,
        session: SessionId {
            initiator: nonce(0)?,
            responder: nonce(1)?,
        },
        signature: Signature64(signature),
    };
    Ok((receipt, inline))
}

/// Every receipt in one JSON line: the line's own `receipt`, and those of a
/// redundant task's copies.
fn receipts_in(line: &Value) -> Vec<&Value> {
    let mut out: Vec<&Value> = line.get("receipt").into_iter().collect();
    if let Some(copies) = line["redundancy"]["receipts"].as_array() {
        out.extend(copies.iter());
    }
    if out.is_empty() && line.get("signature").is_some() {
        out.push(line); // a bare receipt
    }
    out
}

/// `p2pa verify FILE`: one line per receipt, a summary, exit 1 if any fails.
pub fn cmd_verify(file: &Path) -> CliResult {
    let reader: Box<dyn BufRead> = if file == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(file)
            .map_err(|e| CliError::usage(format!("{}: {e}", file.display())))?;
        Box::new(std::io::BufReader::new(f))
    };
    let (mut ok, mut bad, mut none) = (0u64, 0u64, 0u64);
    for (n, line) in reader.lines().enumerate() {
        let at = n.saturating_add(1);
        let line = line.map_err(|e| CliError::failed(format!("{}: {e}", file.display())))?;
        if line.trim().is_empty() {
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            bad = bad.saturating_add(1);
            println!("line {at}: not JSON");
            continue;
        };
        let receipts = receipts_in(&v);
        if receipts.is_empty() {
            none = none.saturating_add(1); // a failed task, or a header line
        }
        for r in receipts {
            match check_one(r) {
                Ok(what) => {
                    ok = ok.saturating_add(1);
                    println!("line {at}: ok: {what}");
                }
                Err(why) => {
                    bad = bad.saturating_add(1);
                    println!("line {at}: FAILED: {why}");
                }
            }
        }
    }
    eprintln!("{ok} receipt(s) verified, {bad} failed, {none} line(s) without a receipt");
    if bad > 0 {
        Ok(exit::TASK_FAILED)
    } else if ok == 0 {
        Err(CliError::usage(format!(
            "{}: no receipt found (pass a batch journal or `p2pa submit --json` output)",
            file.display()
        )))
    } else {
        Ok(exit::OK)
    }
}

/// Checks one receipt (as [`receipt_json`] writes it); what it proves, or why not.
pub fn check_one(v: &Value) -> Result<String, String> {
    let (r, inline) = receipt_from_json(v)?;
    verify_receipt(&r, inline.as_deref()).map_err(|e| match e {
        ReceiptCheck::OutputDiffers if inline.is_none() => {
            "the output travelled in the result frame but is not in the receipt".to_owned()
        }
        e => format!("task {}: {e}", r.task_id),
    })?;
    Ok(format!(
        "task {} {} by worker {} for {}",
        r.task_id,
        r.status,
        r.worker.short(),
        r.requester.short()
    ))
}

/// The arguments of `p2pa verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// A batch journal (`p2pa batch --out`) or `p2pa submit --json` output,
    /// one JSON object per line; `-` reads stdin
    pub file: PathBuf,
}
