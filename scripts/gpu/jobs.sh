#!/usr/bin/env bash
# One function per model trained by train_all.sh; each trains from .gpu/data<A|B>/<key>/ (made by the
# prep commands in docs/gpu_training.md) into $RUNS/<key>/ within its seconds, on the GPU.
ALL_JOBS="seg3d lesion label seg2d"
jobs_of() { case "$1" in A) echo "seg3d lesion" ;; B) echo "label seg2d" ;; esac; }
SECONDS_A=${SECONDS_A:-500}
SECONDS_B=${SECONDS_B:-420}

job_seg3d() { echo "seg3d: placeholder"; sleep 2; echo weights > "$RUNS/seg3d/w.txt"; }
job_lesion() { echo "lesion: placeholder"; sleep 2; echo weights > "$RUNS/lesion/w.txt"; }
job_label() { echo "label: placeholder"; sleep 2; echo weights > "$RUNS/label/w.txt"; }
job_seg2d() { echo "seg2d: placeholder"; sleep 2; mkdir -p "$RUNS/seg2d/scratch"; echo x > "$RUNS/seg2d/scratch/big"; echo weights > "$RUNS/seg2d/w.txt"; }
