//! presence-bench: presence load generator speaking only the public Matrix client-server API.
//! See docs/benchmark.md and `presence-bench --help`.

mod cli;
mod hs;
mod report;
mod run;
mod sample;
mod scenario;
mod setup;
#[cfg(test)]
mod tests;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::cli::{Args, PathKind, Scenario};
use crate::setup::Unsupported;

async fn real_main(a: Args) -> anyhow::Result<()> {
    let start = Instant::now();
    // pool: one idle connection per watcher + per driver + setup slack
    let hs = hs::Hs::new(
        &a.base_url,
        Duration::from_secs_f64(a.request_timeout),
        a.users + a.concurrency + a.register_concurrency + 8,
    )?;
    eprintln!(
        "presence-bench: target {} scenario={} label={} users={} shape={} path={} mode={}",
        a.base_url,
        a.scenario.name(),
        a.label,
        a.users,
        a.shape.name(),
        a.path.name(),
        a.mode.name()
    );
    let s = setup::run(&hs, &a).await?;
    let setup_secs = start.elapsed().as_secs_f64();
    eprintln!("setup: done in {setup_secs:.1}s");
    if a.setup_only {
        return Ok(());
    }
    let outcome = match a.scenario {
        Scenario::Delivery => None,
        Scenario::Idle => Some(scenario::idle(&hs, &a, &s).await?),
        Scenario::Churn => Some(scenario::churn(&hs, &a, &s).await?),
        Scenario::Burst => Some(scenario::burst(&hs, &a, &s).await?),
    };
    if let Some(o) = outcome {
        if let Some(p) = &a.out {
            std::fs::write(p, serde_json::to_vec_pretty(&o.json)?)
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", p.display()))?;
            eprintln!("results written to {}", p.display());
        }
        println!("{}", o.summary);
        return Ok(());
    }
    let d = run::run(&hs, &a, &s, setup_secs).await?;
    if a.path == PathKind::Peek {
        let failed = tokio::time::timeout(Duration::from_secs(30), setup::unpeek_all(&hs, &a, &s)).await;
        if let Ok(f) = failed {
            if f > 0 {
                eprintln!("unpeek: {f} unpeek calls failed (ignored)");
            }
        }
    }
    let mut r = report::analyze(&a, &s, &d);
    if let Some(rss) = a.server_pid.and_then(sample::proc_rss_kb) {
        r.json["host"]["server_rss_kb_end"] = serde_json::json!(rss);
        r.summary.push_str(&format!(" srv_rss={rss}KB"));
    }
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(p) = &a.out {
        std::fs::write(p, serde_json::to_vec_pretty(&r.json)?)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", p.display()))?;
        eprintln!("results written to {}", p.display());
    }
    println!("{}", r.summary);
    Ok(())
}

fn main() -> ExitCode {
    let a = Args::parse();
    if let Err(e) = a.validate() {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(a.threads.max(1)).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let max_total = Duration::from_secs_f64(a.max_total);
    let res = rt.block_on(async move { tokio::time::timeout(max_total, real_main(a)).await });
    // do not wait for stray tasks (e.g. requests cut off by --max-total)
    rt.shutdown_timeout(Duration::from_secs(1));
    match res {
        Err(_) => {
            eprintln!("error: --max-total exceeded; aborted");
            ExitCode::from(1)
        }
        Ok(Err(e)) if e.chain().any(|c| c.is::<Unsupported>()) => {
            eprintln!("error: this --path is {e}");
            ExitCode::from(2)
        }
        Ok(Err(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
        Ok(Ok(())) => ExitCode::SUCCESS,
    }
}
