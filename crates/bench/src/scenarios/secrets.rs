//! The CPU cost of encryption at rest next to a login: sealing and opening a
//! TOTP secret under a data key, as a share of one argon2 verify with the
//! server's parameters (a lower bound of a login's CPU), both in-process on
//! one thread, measured alternately in each round.

use super::Found;
use crate::{
    Bench, Bound, Check, Measurement,
    raw::{self, Rate, Work},
};

const SCENARIO: &str = "secrets";

pub async fn run(bench: &Bench, found: &mut Found) -> anyhow::Result<()> {
    let (warmup, duration) = (bench.args.warmup, bench.args.duration);
    let (mut sealing, mut verifying) = (Rate::default(), Rate::default());
    let mut shares = Vec::new();
    for _ in 0..bench.rounds() {
        let seal = raw::data_key_throughput(1, warmup, duration).await?;
        let verify = raw::argon2_throughput(&bench.argon2, Work::Verify, 1, warmup, duration).await?;
        shares.push(match (seal.cpu_ms_per_op(), verify.cpu_ms_per_op()) {
            (Some(seal), Some(verify)) if verify > 0.0 => seal / verify,
            _ => f64::NAN,
        });
        sealing.merge(seal);
        verifying.merge(verify);
    }
    for (name, rate) in [
        ("limit: seal + open a TOTP secret in-process (ChaCha20-Poly1305), 1 thread", sealing),
        ("limit: argon2 verify in-process, 1 thread", verifying),
    ] {
        found.measured(Measurement {
            concurrency: Some(1),
            completed: rate.completed,
            throughput: Some(rate.per_second()),
            cpu_ms_per_op: rate.cpu_ms_per_op(),
            ..Measurement::new(SCENARIO, name)
        });
    }
    found.check(Check::median(
        SCENARIO,
        "CPU of seal + open of a TOTP secret / CPU of a login's argon2 verify, median of rounds",
        &shares,
        Bound::Below,
        0.01,
    ));
    Ok(())
}
