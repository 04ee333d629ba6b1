#!/usr/bin/env bash
# Installs the training dependencies that a GPU machine without package-registry access lacks, from
# wheels brought along in .gpu/wheels (SimpleITK as an xz tarball of its unpacked wheel, being too big
# otherwise), into /tmp/site; torch, numpy, scipy and safetensors come from the machine's own Python.
# Source it: it exports PYTHONPATH. Does nothing where SimpleITK and MONAI already import.
SITE=${SITE:-/tmp/site}
PY=${PY:-python3}
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import SimpleITK, monai, ignite" 2>/dev/null; then
    mkdir -p "$SITE"
    tar -xJf .gpu/wheels/sitk.tar.xz -C "$SITE"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        .gpu/wheels/*.whl
fi
"$PY" -c "import SimpleITK, monai, ignite, torch; print('env: torch', torch.__version__, 'monai', monai.__version__,
'SimpleITK', SimpleITK.Version.VersionString(), 'cuda', torch.cuda.is_available())"
