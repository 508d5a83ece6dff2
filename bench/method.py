"""How the figures were obtained and what they do not show: written into every report."""

from __future__ import annotations

from bench.config import DISTURBED_PCT, Config
from bench.stats import LOAD_GENERATOR_BOUND_PCT


def notes(config: Config) -> list[str]:
    mix = ", ".join(f"{weight:g}% {kind}" for kind, weight in config.mix.items())
    share = f"{config.fixed_rate_share:.0%}"
    return [
        "Each server is one process, every one pinned to the same CPU (`taskset -c`); wrk runs pinned to another, "
        "with one thread. "
        "The embedded PostgreSQL (the default) is pinned to wrk's CPU, standing in for a database on another "
        "machine: database-bound figures (user_miss, create, login, update, mixed) then share that CPU between the "
        "database and wrk, never the server's. A server named by AUTH_BENCH_DATABASE_URL or "
        "AUTH_TEST_DATABASE_URL is not pinned (see the database line of the settings).",
        "service: `auth-service serve` with its production defaults (metrics on, tracing off), AUTH_ENVIRONMENT="
        "production, a generated AUTH_TOKEN_KEYS and AUTH_BATCH_TOKEN, AUTH_HASH_WORKERS=1, AUTH_LOG_LEVEL=WARNING and "
        "AUTH_DRAIN_DELAY_SECONDS=0 (shutdown only: the harness stops it between blocks). baseline: "
        "`python -m bench.baseline`, same AUTH_* settings. ceiling: `python -m bench.ceiling` answering the exact "
        "bytes the service gave for one verify and one user read.",
        f"Data: a fresh database per run, {config.users:,} users imported through POST /v1/users:batch with one "
        "argon2id hash (computed once with the service's parameters) for all; tokens from real logins "
        f"({config.logins}, renewed before each endpoint); user_hit reads a hot set of {config.hot_set:,} ids "
        "that fits the cache; user_miss reads all ids with the service started with AUTH_CACHE_MAX_ENTRIES=1, "
        "so nearly every read goes to PostgreSQL (the baseline has no cache at all).",
        f"The verify load cycles through {config.logins} tokens: a service that remembers verified tokens serves "
        "them from that memory after the first round, as it would a client reusing its token.",
        f"mixed: {mix}. not_found reads random UUIDs (a database query, 404: counted apart, not as errors); "
        "update is a PATCH of the name with the user's own token (also measured alone as the update endpoint, "
        f"on the service and the baseline: {config.connections} connections over the {config.logins} users with "
        "tokens, so some updates wait for another's row lock); creates and logins cost an argon2id hash "
        "(~20 ms of the one core each), so they are kept to 0.4% and 0.1%. Override with AUTH_BENCH_MIX="
        '"verify=70,user_hit=20,...". mixed_no_hashing: the same mix less its creates and logins, on the same '
        "service process; from the two, what each hashing request costs and how much of the mix's CPU they take.",
        "Interleaved rounds: the service, the baseline and the ceiling run side by side, idle but for the one "
        "measured. For each endpoint, after a warm-up of each in turn, every round runs each server once in the "
        f"order service, baseline, ceiling ({config.repetitions} rounds; the mix less its hashing runs in the mix's "
        "rounds, after the baseline), then each gets its paced run. One round's runs lie seconds apart, where the "
        "host's speed moved by up to 2x between the blocks of one run when each server had a block of its own "
        "(2026-12-02: the speed probe read 9.4 ms before the service, 18.5 ms before the ceiling). So each ratio "
        "between servers (service/ceiling, service/baseline, and the targets that compare them) is the median of "
        "the rounds' ratios, each round's own run against the other's, not the ratio of the medians (`ratios` in "
        "the JSON keeps both, and each round's; `ratio_runs` in each such target). user_miss runs in rounds of "
        "the service with a one-entry cache and the baseline, once the shipped service has stopped. Idle "
        "neighbours are not quite idle: the service LISTENs for the users table's NOTIFY, so while the baseline's "
        "updates run, it wakes for each on the same CPU (it shows as the baseline's stolen %).",
        "Saturation: wrk with a fixed number of connections sending as fast as answers come. rps is the median of "
        "the server's runs (one a round), with min and max; p50/p99/p99.9 are wrk's (per run, exact to the "
        "microsecond), the median across runs. errors: connect, read, write, timeout (2 s) and 4xx/5xx answers, "
        "except in the mix: its 404s, and 503s with Retry-After, which are counted apart (shed: requests the "
        "service refused at "
        "once because its bounded password-hashing pool was full; a closed-loop run at saturation overloads it "
        "by design, a paced run should not).",
        f"Fixed rate: one run paced at {share} of the median saturation rate by the wrk script's delay(): each "
        "request takes the next slot of a fixed schedule, whichever connection is free. Limits: wrk's timers have "
        "1 ms resolution (requests leave up to 1 ms early, in small bursts); latency is measured from when the "
        "request is written, not from its slot. 'achieved' shows whether the schedule was kept.",
        "Latency percentiles, both kinds of run, are wrk 4's after its correction for coordinated omission "
        "(`stats_correct`, applied before the script sees them): each response slower than twice the mean "
        "interval between requests on one connection (connections / rps: 1.4 ms at 45k rps on 64) also counts "
        "as the responses that connection would have been waiting for, one per interval. It makes p99 "
        "pessimistic, the more so the slower the tail: on the hot paths few responses are past twice the "
        "interval and the figures move little; in the mix, each argon2 request queued for about a second "
        "counts some 80 times (an 11 ms interval at 5.5k rps), so its p99 is theirs, not the reads' (2026-11-29, "
        "99.5% verify and 0.5% logins on 64 connections at saturation: wrk gave p99 1.25 s and a mean of 183 ms; "
        "an asyncio client timing each request gave p99 9.1 ms overall, 8.9 ms for the verifies). "
        "Our pacer shares one schedule among the connections, so a slow response delays no other "
        "request's slot: the correction adds samples for requests that were in fact sent on time.",
        "CPU us/req: utime+stime of the server process (all its threads) from /proc/PID/stat over the measured runs, "
        "divided by the requests answered (10 ms ticks). rps/core = 1e6 / CPU us/req: the rate one whole core "
        "would sustain at that cost. It does not move when other processes take the CPU, so on a shared machine "
        "it is the steadier throughput figure; the targets show it beside rps. CPU %: the server's CPU time "
        "over the run (100: it had its core and used all of it).",
        "stolen %: how long other processes held the server's CPU while its event loop was ready to run "
        "(the main thread's run-queue wait from /proc/PID/schedstat, less what the process's own other threads "
        f"ran). A run with more than {DISTURBED_PCT:g}% stolen is run again, up to {config.retries} times, and the "
        "least disturbed attempt is kept (retried_runs in the JSON); what remains understates the server's rps.",
        f"wrk CPU %: wrk's own CPU time over the run (the median of the runs). At {LOAD_GENERATOR_BOUND_PCT:g}% "
        "or more, the load generator rather than the server set the pace: the entry is marked wrk-bound "
        "(load_generator_bound in the JSON; so is each ratio and target that reads it), its rps is wrk's limit and "
        "a lower bound of the server's, a ratio against it an upper bound. The ceiling is there on the hot reads. "
        "RSS: VmRSS after the saturation runs.",
        "PostgreSQL CPU (db_cpu_us_per_request, for user_miss, login, create, update and both mixes): utime+stime "
        "of the postmaster, of every process it has forked and is running (backends, WAL writer, checkpointer, "
        "autovacuum workers) and of those it has reaped (cutime+cstime), from /proc/PID/stat just before and "
        "after each measured run, summed over the runs and divided by the requests answered (10 ms ticks, per "
        "process). The embedded server is the harness's alone; a server named by AUTH_BENCH_DATABASE_URL or "
        "AUTH_TEST_DATABASE_URL counts its other clients' work too, and gives no figure (null) when its "
        "processes are not on this machine.",
        "GC pauses: the service's own python_gc_pause_seconds histogram (admin /metrics), scraped before and after "
        "each measured run.",
        "Tokens, signing keys and the database are made for the run and dropped at its end.",
    ]
