//! Forward, forward + input gradient, and one PGD step of the shipped MNIST model.
//! `cargo bench --bench passes`; throughput is reported in images per second.

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gauntlet::attacks::{AttackBatch, Norm, Registry, ThreatModel};
use gauntlet::models::{zoo, Bounds, Classifier, Goal, Loss};

fn passes(c: &mut Criterion) {
    let model = zoo::mnist_cnn(&Device::Cpu).unwrap();
    let pgd1 = Registry::default().create("pgd:steps=1,random_start=false").unwrap();
    let threat = ThreatModel::new(Norm::Linf, 0.3, Bounds::default()).unwrap();
    let mut group = c.benchmark_group("mnist-cnn");
    for batch in [1usize, 32, 256] {
        let x = Tensor::rand(0f32, 1f32, (batch, 1, 28, 28), &Device::Cpu).unwrap();
        // Labels no prediction will match, so that PGD never stops early.
        let goal = Goal::targeted(vec![0; batch]);
        let ids: Vec<u64> = (0..batch as u64).collect();
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("forward", batch), &x, |b, x| b.iter(|| model.logits(x).unwrap()));
        group.bench_with_input(BenchmarkId::new("forward+grad", batch), &x, |b, x| {
            b.iter(|| model.loss_and_grad(x, &goal, Loss::CrossEntropy).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("pgd-step", batch), &x, |b, x| {
            let batch = AttackBatch { x0: x, goal: &goal, ids: &ids, seed: 0, stream: 0 };
            b.iter(|| pgd1.run(&model, &batch, &threat).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, passes);
criterion_main!(benches);
