#!/usr/bin/env bash
# One function per model trained by train_all.sh; each trains from .gpu/data<A|B>/<key>/ (made by the
# prep commands in docs/gpu_training.md) into $RUNS/<key>/ within its seconds, on the GPU.
ALL_JOBS="seg3d lesion whole ribs label seg2d"
jobs_of() { case "$1" in A) echo "seg3d lesion whole ribs" ;; B) echo "label seg2d" ;; esac; }
SECONDS_A=${SECONDS_A:-500}
SECONDS_B=${SECONDS_B:-420}
DEVICE=${DEVICE:-cuda}  # cpu, with WORKERS=1 and a minute each, for a rehearsal here
WORKERS=${WORKERS:-4}  # CPU cores per job: the machine has 16 for four jobs
export OMP_NUM_THREADS=1  # each worker one thread: four jobs x four workers fill the 16 cores

job_seg3d() {
    # its workers read the label map again and again: copy it out of .gpu/, which the next call's copy of the
    # working tree replaces (the 2026-11-30 run lost this job that way)
    mkdir -p "$RUNS/seg3d/scratch/data" && cp .gpu/dataA/seg3d/* "$RUNS/seg3d/scratch/data/" || return 1
    "$PY" -m spinebrain.spinesegment.device3d --data "$RUNS/seg3d/scratch/data" --out "$RUNS/seg3d" \
        --device "$DEVICE" --workers "$WORKERS" --seconds "$SECONDS_A"
}
job_lesion() {
    "$PY" -m spinebrain.brainseg.lesion_gpu train --data .gpu/dataA/lesion --out "$RUNS/lesion" \
        --device "$DEVICE" --workers "$WORKERS" --seconds "$SECONDS_A" --reserve 30 --patch 64 --batch-size 8 --steps-per-epoch 60 \
        --lr 1e-3 --init-weights Resources/Models/brain-lesion-synth/model.safetensors
}
job_label() {
    "$PY" -m spinebrain.spinelabel.heatmap_gpu train --cache .gpu/dataB/label --out "$RUNS/label" --device "$DEVICE" \
        --workers "$WORKERS" --batch 32 --samples-per-epoch 8192 --lr 1e-3 --seconds "$SECONDS_B" \
        --init Resources/Models/spine-label-lumbar-heatmap --anchor-neighbour-weight 5 --checkpoint-seconds 50
}
job_whole() {  # the whole-spine SpineLabel model: the lumbar one plus a C2 anchor channel, necks and whole spines
    "$PY" -m spinebrain.spinelabel.heatmap_gpu train --cache .gpu/dataA/whole --out "$RUNS/whole" --device "$DEVICE" \
        --workers "$WORKERS" --batch 32 --samples-per-epoch 8192 --lr 1e-3 --seconds "$SECONDS_A" --outputs 3 \
        --third-channel C2 --init Resources/Models/spine-label-lumbar-heatmap --anchor-neighbour-weight 5 \
        --checkpoint-seconds 50
}
job_ribs() {  # the whole-spine package's rib classifier (its recipe as in the card): samples drawn on the cores the
    # call-A jobs leave free, a small network trained on the CPU, installed into a copy of the package (ribs files + card)
    rm -rf "$RUNS/ribs/package" && cp -r Resources/Models/spine-label-whole-heatmap "$RUNS/ribs/package" || return 1
    "$PY" -m spinebrain.spinelabel.rib_training --generate "${RIB_SCANS:-690}" --first-seed 3100001 \
        --workers "$WORKERS" --threads "$WORKERS" --run "$RUNS/ribs/scratch" --minutes "${RIB_MINUTES:-3}" \
        --recipe whole --narrow-share 0.5 --package "$RUNS/ribs/package"
}
job_seg2d() {
    "$PY" -m spinebrain.spinesegment.engine2d --cache .gpu/dataB/seg2d --out "$RUNS/seg2d/scratch/run" \
        --export "$RUNS/seg2d" --device "$DEVICE" --workers "$WORKERS" --batch-size 32 --seconds "$SECONDS_B" \
        --reserve 30 --epoch-seconds 40 --lr-schedule time --lr 6e-4 --crop 128 \
        --init Resources/Models/spine-segment-mr-2d --validation-step 2 --epochs 1000 --samples-per-epoch 1000000 \
        --patience 1000
}
