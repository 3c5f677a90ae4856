//! Collection helpers the original mstream registers next to the documented ones:
//! `sum`, `avg`, `min`, `max` (each with an optional key function), `group_by`,
//! `count_by`, `unique` (optional key function), `flatten`, `pluck`, `pick`, `omit`.
//!
//! Non-numeric values (and NaN) are skipped by the aggregations; `sum` stays an integer
//! while every value is one (and it does not overflow); `avg` is a float; `avg`, `min`
//! and `max` of nothing are `()`. Group keys are the key function's result as a string.

use std::collections::HashSet;

use rhai::{Array, Dynamic, Engine, EvalAltResult, FnPtr, Map, NativeCallContext, FLOAT, INT};

type Res<T> = Result<T, Box<EvalAltResult>>;

/// Register the helpers on `engine`.
pub fn register(engine: &mut Engine) {
    engine.register_fn("sum", |arr: Array| sum(arr.iter().cloned()));
    engine.register_fn(
        "sum",
        |ctx: NativeCallContext, arr: Array, f: FnPtr| -> Res<Dynamic> {
            Ok(sum(keys(&ctx, &arr, &f)?.into_iter()))
        },
    );
    engine.register_fn("avg", |arr: Array| avg(arr.iter().cloned()));
    engine.register_fn(
        "avg",
        |ctx: NativeCallContext, arr: Array, f: FnPtr| -> Res<Dynamic> {
            Ok(avg(keys(&ctx, &arr, &f)?.into_iter()))
        },
    );
    engine.register_fn("min", |arr: Array| extreme(&arr, &arr, Less));
    engine.register_fn(
        "min",
        |ctx: NativeCallContext, arr: Array, f: FnPtr| -> Res<Dynamic> {
            Ok(extreme(&arr, &keys(&ctx, &arr, &f)?, Less))
        },
    );
    engine.register_fn("max", |arr: Array| extreme(&arr, &arr, More));
    engine.register_fn(
        "max",
        |ctx: NativeCallContext, arr: Array, f: FnPtr| -> Res<Dynamic> {
            Ok(extreme(&arr, &keys(&ctx, &arr, &f)?, More))
        },
    );
    engine.register_fn(
        "group_by",
        |ctx: NativeCallContext, arr: Array, f: FnPtr| -> Res<Map> {
            let mut out = Map::new();
            for (item, key) in arr.iter().zip(keys(&ctx, &arr, &f)?) {
                let slot = out
                    .entry(key.to_string().into())
                    .or_insert_with(|| Dynamic::from_array(Array::new()));
                if let Some(mut group) = slot.write_lock::<Array>() {
                    group.push(item.clone());
                }
            }
            Ok(out)
        },
    );
    engine.register_fn(
        "count_by",
        |ctx: NativeCallContext, arr: Array, f: FnPtr| -> Res<Map> {
            let mut out = Map::new();
            for key in keys(&ctx, &arr, &f)? {
                let slot = out
                    .entry(key.to_string().into())
                    .or_insert(Dynamic::from_int(0));
                *slot = Dynamic::from_int(slot.as_int().unwrap_or(0) + 1);
            }
            Ok(out)
        },
    );
    engine.register_fn("unique", |arr: Array| {
        let mut seen = HashSet::new();
        arr.into_iter()
            .filter(|v| seen.insert(v.to_string()))
            .collect::<Array>()
    });
    engine.register_fn(
        "unique",
        |ctx: NativeCallContext, arr: Array, f: FnPtr| -> Res<Array> {
            let mut seen = HashSet::new();
            let ks = keys(&ctx, &arr, &f)?;
            Ok(arr
                .into_iter()
                .zip(ks)
                .filter(|(_, k)| seen.insert(k.to_string()))
                .map(|(v, _)| v)
                .collect())
        },
    );
    engine.register_fn("flatten", |arr: Array| {
        arr.into_iter()
            .flat_map(|v| {
                if v.is_array() {
                    v.cast::<Array>()
                } else {
                    vec![v]
                }
            })
            .collect::<Array>()
    });
    engine.register_fn("pluck", |arr: Array, field: &str| {
        arr.into_iter()
            .map(|v| {
                v.read_lock::<Map>()
                    .and_then(|m| m.get(field).cloned())
                    .unwrap_or(Dynamic::UNIT)
            })
            .collect::<Array>()
    });
    engine.register_fn("pick", |obj: Map, fields: Array| {
        fields
            .iter()
            .filter_map(|f| {
                let name = f.to_string();
                obj.get(name.as_str()).map(|v| (name.into(), v.clone()))
            })
            .collect::<Map>()
    });
    engine.register_fn("omit", |obj: Map, fields: Array| {
        let drop: HashSet<String> = fields.iter().map(|f| f.to_string()).collect();
        obj.into_iter()
            .filter(|(k, _)| !drop.contains(k.as_str()))
            .collect::<Map>()
    });
}

/// The key function's result for every item.
fn keys(ctx: &NativeCallContext, arr: &Array, f: &FnPtr) -> Res<Array> {
    arr.iter()
        .map(|item| f.call_within_context::<Dynamic>(ctx, (item.clone(),)))
        .collect()
}

#[derive(Clone, Copy)]
enum Num {
    Int(INT),
    Float(FLOAT),
}

impl Num {
    fn of(v: &Dynamic) -> Option<Self> {
        if let Ok(i) = v.as_int() {
            return Some(Num::Int(i));
        }
        v.as_float().ok().filter(|f| !f.is_nan()).map(Num::Float)
    }

    fn as_f64(self) -> FLOAT {
        match self {
            Num::Int(i) => i as FLOAT,
            Num::Float(f) => f,
        }
    }
}

fn sum(values: impl Iterator<Item = Dynamic>) -> Dynamic {
    let mut int: Option<INT> = Some(0);
    let mut float: FLOAT = 0.0;
    for n in values.filter_map(|v| Num::of(&v)) {
        match (n, int) {
            (Num::Int(i), Some(acc)) => match acc.checked_add(i) {
                Some(s) => int = Some(s),
                None => {
                    float = acc as FLOAT + i as FLOAT;
                    int = None;
                }
            },
            (n, Some(acc)) => {
                float = acc as FLOAT + n.as_f64();
                int = None;
            }
            (n, None) => float += n.as_f64(),
        }
    }
    match int {
        Some(i) => Dynamic::from_int(i),
        None => Dynamic::from_float(float),
    }
}

fn avg(values: impl Iterator<Item = Dynamic>) -> Dynamic {
    let (total, count) = values
        .filter_map(|v| Num::of(&v))
        .fold((0.0, 0_usize), |(t, c), n| (t + n.as_f64(), c + 1));
    if count == 0 {
        Dynamic::UNIT
    } else {
        Dynamic::from_float(total / count as FLOAT)
    }
}

#[derive(Clone, Copy)]
enum Order {
    Less,
    More,
}
use Order::{Less, More};

/// The item whose key is smallest (`Less`) or largest (`More`); the first one wins ties.
fn extreme(items: &Array, keys: &Array, order: Order) -> Dynamic {
    let mut best: Option<(usize, FLOAT)> = None;
    for (i, key) in keys.iter().enumerate() {
        let Some(k) = Num::of(key).map(Num::as_f64) else {
            continue;
        };
        let better = match (best, order) {
            (None, _) => true,
            (Some((_, b)), Less) => k < b,
            (Some((_, b)), More) => k > b,
        };
        if better {
            best = Some((i, k));
        }
    }
    best.map_or(Dynamic::UNIT, |(i, _)| items[i].clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregations() {
        let mut engine = Engine::new();
        register(&mut engine);
        let run = |s: &str| engine.eval::<Dynamic>(s).unwrap().to_string();
        assert_eq!(run("sum([1, 2, 3])"), "6");
        assert_eq!(run("sum([1, 2.5])"), "3.5");
        assert_eq!(run("avg([1, 2])"), "1.5");
        assert_eq!(run("min([3, 1, 2])"), "1");
        assert_eq!(run("max([#{n: 1}, #{n: 5}], |x| x.n).n"), "5");
        assert_eq!(run("count_by([1, 2, 1], |x| x).len()"), "2");
        assert_eq!(run("unique([1, 1, 2]).len()"), "2");
        assert_eq!(run("flatten([[1], [2, 3], 4]).len()"), "4");
        assert_eq!(run("pluck([#{a: 1}, #{b: 2}], \"a\")"), "[1, ()]");
        assert_eq!(run("pick(#{a: 1, b: 2}, [\"a\"]).len()"), "1");
        assert_eq!(run("omit(#{a: 1, b: 2}, [\"a\"]).len()"), "1");
    }
}
