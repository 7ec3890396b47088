//! Call-centre sizing: Erlang C (callers wait as long as it takes — the conservative staffing
//! rule) and Erlang A (callers hang up after an exponential patience — fewer agents reach the
//! same service level, so it is the optimistic bound).

/// Queue figures for `agents` agents.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Queue {
    pub agents: u32,
    /// Probability that a call waits at all.
    pub p_wait: f64,
    /// Share of calls answered within the target time.
    pub service_level: f64,
    /// Offered (Erlang C) or carried (Erlang A) load per agent.
    pub occupancy: f64,
}

/// A service target: `service_level` of calls answered within `answer_secs`, agents busy at
/// most `max_occupancy` of the time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    pub service_level: f64,
    pub answer_secs: f64,
    pub max_occupancy: f64,
}

/// Erlang C for `calls_per_hour`, average handle time `aht_secs` and `agents` agents. `None`
/// when the agents cannot keep up (load ≥ agents: the queue grows without bound).
pub fn erlang_c(
    calls_per_hour: f64,
    aht_secs: f64,
    agents: u32,
    answer_secs: f64,
) -> Option<Queue> {
    let load = calls_per_hour * aht_secs / 3600.0;
    let n = f64::from(agents);
    if agents == 0 || load >= n {
        return None;
    }
    // Erlang B by its stable recursion, then C from B.
    let mut b = 1.0;
    for k in 1..=agents {
        b = load * b / (f64::from(k) + load * b);
    }
    let p_wait = n * b / (n - load * (1.0 - b));
    let service_level = 1.0 - p_wait * (-(n - load) * answer_secs / aht_secs).exp();
    Some(Queue {
        agents,
        p_wait,
        service_level,
        occupancy: load / n,
    })
}

/// Erlang A (M/M/N+M) with mean patience `patience_secs`: the birth–death chain solved
/// numerically; a call counts as answered in time if it reaches an agent within
/// `answer_secs` without hanging up first.
pub fn erlang_a(
    calls_per_hour: f64,
    aht_secs: f64,
    patience_secs: f64,
    agents: u32,
    answer_secs: f64,
) -> Option<Queue> {
    if agents == 0 || calls_per_hour <= 0.0 || patience_secs <= 0.0 {
        return None;
    }
    let (lambda, mu, theta) = (calls_per_hour / 3600.0, 1.0 / aht_secs, 1.0 / patience_secs);
    let n = f64::from(agents);
    // Stationary distribution over calls in the system, truncated where it is negligible.
    let mut weights = vec![1.0f64];
    let mut total = 1.0;
    loop {
        let k = weights.len() as f64;
        let death = k.min(n) * mu + (k - n).max(0.0) * theta;
        let next = weights[weights.len() - 1] * lambda / death;
        weights.push(next);
        total += next;
        // Heavy loads grow the weights past f64's range before the tail falls off: rescale.
        if total > 1e250 {
            weights.iter_mut().for_each(|w| *w *= 1e-250);
            total *= 1e-250;
        }
        // The cap only guards against nonsense input (no patience to speak of).
        if (k > n && next < 1e-12 * total) || k > n + 1e6 {
            break;
        }
    }
    let pi: Vec<f64> = weights.iter().map(|w| w / total).collect();
    let busy = agents as usize;
    let p_wait: f64 = pi[busy..].iter().sum();
    let queued: f64 = pi
        .iter()
        .enumerate()
        .map(|(k, p)| (k.saturating_sub(busy)) as f64 * p)
        .sum();
    let abandon = theta * queued / lambda;
    // Queue lengths met with negligible probability do not move the service level.
    let mut waiting = &pi[busy..];
    while waiting.len() > 1 && waiting[waiting.len() - 1] < 1e-12 {
        waiting = &waiting[..waiting.len() - 1];
    }
    let in_time = answered_within(waiting, n * mu, theta, answer_secs);
    Some(Queue {
        agents,
        p_wait,
        service_level: pi[..busy].iter().sum::<f64>() + in_time,
        occupancy: lambda * (1.0 - abandon) / (n * mu),
    })
}

/// Σ over arrivals that find `q` calls queued (probability `found[q]`) of the chance to reach an
/// agent within `t` before hanging up. Position p moves up at rate `served + (p−1)·theta` (an
/// agent frees up, or someone ahead hangs up) and the caller hangs up at rate `theta`;
/// uniformisation turns that into a discrete chain weighted by Poisson probabilities.
fn answered_within(found: &[f64], served: f64, theta: f64, t: f64) -> f64 {
    let positions = found.len();
    let rate = served + positions as f64 * theta + theta;
    let mean = rate * t;
    let steps = (mean + 12.0 * mean.sqrt() + 20.0).ceil() as usize;
    // reached[p]: probability of having reached an agent within the steps so far, from
    // position p (1-based; index 0 is "at an agent").
    let mut reached = vec![0.0; positions + 1];
    reached[0] = 1.0;
    let mut poisson = (-mean).exp();
    let mut answered = vec![0.0; positions + 1];
    for step in 0..=steps {
        for (a, r) in answered.iter_mut().zip(&reached) {
            *a += poisson * r;
        }
        let previous = reached.clone();
        for p in 1..=positions {
            let up = (served + (p - 1) as f64 * theta) / rate;
            let stay = 1.0 - up - theta / rate;
            reached[p] = up * previous[p - 1] + stay * previous[p];
        }
        poisson *= mean / (step + 1) as f64;
    }
    // The Poisson weights of the steps never taken count as "not yet": a lower bound.
    found
        .iter()
        .enumerate()
        .map(|(q, f)| f * answered[q + 1])
        .sum()
}

/// The fewest agents meeting `target` under Erlang C, from the load upwards.
pub fn agents_erlang_c(calls_per_hour: f64, aht_secs: f64, target: Target) -> u32 {
    if calls_per_hour <= 0.0 {
        return 0;
    }
    let load = calls_per_hour * aht_secs / 3600.0;
    let mut n = load.floor() as u32 + 1;
    loop {
        if let Some(q) = erlang_c(calls_per_hour, aht_secs, n, target.answer_secs) {
            if q.service_level >= target.service_level && q.occupancy <= target.max_occupancy {
                return n;
            }
        }
        n += 1;
    }
}

/// The fewest agents meeting `target` under Erlang A (never more than Erlang C's). More
/// agents only raise the service level and lower occupancy, so a binary search finds it.
pub fn agents_erlang_a(
    calls_per_hour: f64,
    aht_secs: f64,
    patience_secs: f64,
    target: Target,
) -> u32 {
    let meets = |n| {
        erlang_a(
            calls_per_hour,
            aht_secs,
            patience_secs,
            n,
            target.answer_secs,
        )
        .is_some_and(|q| {
            q.service_level >= target.service_level && q.occupancy <= target.max_occupancy
        })
    };
    let (mut low, mut high) = (1, agents_erlang_c(calls_per_hour, aht_secs, target));
    while low < high {
        let mid = low + (high - low) / 2;
        if meets(mid) {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    high
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook example (e.g. callcentrehelper.com's Erlang C walk-through): 100 calls per
    /// 30 minutes, 180 s handle time, 14 agents → P(wait) ≈ 0.174, 88.8 % answered in 20 s.
    #[test]
    fn erlang_c_matches_the_published_example() {
        let q = erlang_c(200.0, 180.0, 14, 20.0).unwrap();
        assert!((q.p_wait - 0.1741).abs() < 0.001, "{q:?}");
        assert!((q.service_level - 0.8884).abs() < 0.001, "{q:?}");
        assert!((q.occupancy - 10.0 / 14.0).abs() < 1e-9);
        // 13 agents answer 79.6 % in 20 s, so 80 % takes 14.
        let target = Target {
            service_level: 0.8,
            answer_secs: 20.0,
            max_occupancy: 0.85,
        };
        assert_eq!(agents_erlang_c(200.0, 180.0, target), 14);
        let thirteen = erlang_c(200.0, 180.0, 13, 20.0).unwrap();
        assert!(
            (thirteen.service_level - 0.7956).abs() < 0.001,
            "{thirteen:?}"
        );
        assert!(
            erlang_c(200.0, 180.0, 10, 20.0).is_none(),
            "load 10 on 10 agents diverges"
        );
    }

    #[test]
    fn erlang_a_is_the_optimistic_bound_and_tends_to_erlang_c() {
        let c = erlang_c(200.0, 180.0, 14, 20.0).unwrap();
        let a = erlang_a(200.0, 180.0, 120.0, 14, 20.0).unwrap();
        assert!(
            a.p_wait < c.p_wait && a.service_level > c.service_level,
            "{a:?} {c:?}"
        );
        // Callers who never hang up: Erlang A becomes Erlang C.
        let patient = erlang_a(200.0, 180.0, 1e9, 14, 20.0).unwrap();
        assert!((patient.p_wait - c.p_wait).abs() < 1e-3, "{patient:?}");
        assert!(
            (patient.service_level - c.service_level).abs() < 1e-3,
            "{patient:?}"
        );
        let target = Target {
            service_level: 0.8,
            answer_secs: 20.0,
            max_occupancy: 0.85,
        };
        assert!(
            agents_erlang_a(200.0, 180.0, 120.0, target) <= agents_erlang_c(200.0, 180.0, target)
        );
    }

    #[test]
    fn a_storm_sized_load_stays_finite() {
        // 10,000 calls an hour: the chain's weights pass f64's range unless rescaled.
        let a = erlang_a(10_000.0, 240.0, 120.0, 5, 20.0).unwrap();
        assert!(a.p_wait.is_finite() && a.p_wait > 0.99, "{a:?}");
        let target = Target {
            service_level: 0.8,
            answer_secs: 20.0,
            max_occupancy: 0.85,
        };
        let c = agents_erlang_c(10_000.0, 240.0, target);
        assert!(c > 667, "more agents than the load of 667 Erlangs: {c}");
        assert!(agents_erlang_a(10_000.0, 240.0, 120.0, target) <= c);
    }

    #[test]
    fn occupancy_caps_agents_when_the_service_level_alone_would_not() {
        // A big queue reaches 80 % in 20 s close to full occupancy; the 85 % cap adds agents.
        let loose = Target {
            service_level: 0.8,
            answer_secs: 20.0,
            max_occupancy: 1.0,
        };
        let capped = Target {
            max_occupancy: 0.85,
            ..loose
        };
        let calls = 4000.0; // 200 Erlangs at 180 s
        let n = agents_erlang_c(calls, 180.0, capped);
        assert!(n >= (200.0f64 / 0.85).ceil() as u32);
        assert!(agents_erlang_c(calls, 180.0, loose) < n);
    }
}
