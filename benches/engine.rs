use criterion::{Criterion, criterion_group, criterion_main};

fn placeholder(c: &mut Criterion) {
    c.bench_function("engine_insert_1k", |b| {
        b.iter(|| {
            let mut m = mapcache::engine::Map::new();
            for i in 0..1000u64 {
                m.insert(i, i);
            }
            m
        })
    });
}

criterion_group!(benches, placeholder);
criterion_main!(benches);
