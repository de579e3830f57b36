//! rust-hello: a clemmys function in Rust, without the Go SDK and without
//! any crate: it follows the platform's I/O contract by hand
//! (docs/functions.md, "Functions in other languages").
//!
//! Build it and deploy it:
//!
//!     cargo build --release --target wasm32-wasip1
//!     clemmys action create rust-hello target/wasm32-wasip1/release/rust-hello.wasm
//!
//! One-shot convention (every WASI command): the params, one JSON object,
//! on stdin; the result, one JSON object, on stdout; logs on stderr; exit
//! status 0, or non-zero with {"error": "..."} for an application error.
//!
//! Loop convention: because this module exports "clemmys.loop.v1", the
//! platform starts it with CLEMMYS_LOOP=1 and keeps it warm: it then reads
//! one line of params per activation and answers each with one line.

use std::io::{self, BufRead, Read, Write};

/// Exporting this function (it is never called) tells the platform that
/// the module speaks the loop convention.
#[export_name = "clemmys.loop.v1"]
pub extern "C" fn loop_marker() {}

/// handle is the function: it answers the params it got, with a count of
/// the activations this instance served (warm instances keep their state).
fn handle(params: &str, served: u64) -> Result<String, String> {
    let params = params.trim();
    let params = if params.is_empty() { "{}" } else { params };
    if !params.starts_with('{') {
        return Err("parameters must be a JSON object".into());
    }
    eprintln!("rust-hello: activation {} of this instance", served);
    Ok(format!(
        "{{\"greeting\":\"Hello from Rust!\",\"served\":{},\"params\":{}}}",
        served, params
    ))
}

fn error_json(msg: &str) -> String {
    let escaped: String = msg
        .chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            c if (c as u32) < 0x20 => format!("\\u{:04x}", c as u32).chars().collect(),
            c => vec![c],
        })
        .collect();
    format!("{{\"error\":\"{}\"}}", escaped)
}

fn main() {
    let stdout = io::stdout();
    if std::env::var("CLEMMYS_LOOP").as_deref() == Ok("1") {
        // One line in, one line out, until stdin ends.
        let mut served = 0;
        for line in io::stdin().lock().lines() {
            let line = match line {
                Ok(l) => l,
                Err(_) => std::process::exit(2),
            };
            served += 1;
            let out = handle(&line, served).unwrap_or_else(|e| error_json(&e));
            let mut w = stdout.lock();
            if writeln!(w, "{}", out).and_then(|_| w.flush()).is_err() {
                std::process::exit(2);
            }
        }
        return;
    }
    // One shot: at most 16 MiB of params.
    let mut params = String::new();
    if io::stdin().take(16 << 20).read_to_string(&mut params).is_err() {
        println!("{}", error_json("cannot read the parameters"));
        std::process::exit(2);
    }
    match handle(&params, 1) {
        Ok(out) => println!("{}", out),
        Err(e) => {
            println!("{}", error_json(&e));
            std::process::exit(1);
        }
    }
}
