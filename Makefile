# Two entry points, both starting from nothing on a fresh machine:
#   make demo   creates .venv, installs vdm3d, runs the main job on the embedded default backbone
#   make test   same install, then the whole test suite (what CI runs)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# System libraries for software OpenGL (ground-truth mesh rendering on Mesa llvmpipe through EGL).
SYSTEM_PACKAGES := libegl1 libegl-mesa0 libgl1-mesa-dri libgl1 libgles2
# Headless Chromium photographs the `vdm3d view` page in its test (the test skips, naming this, without it).
BROWSER_PACKAGES := chromium

export HF_HUB_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: demo test test-quick install system-deps bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(MAKE) --no-print-directory system-deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	@# the Khronos glTF validator for the GLB test (skipped, with the reason, where npm is absent)
	@if command -v npm >/dev/null 2>&1; then \
	  npm install -s --no-audit --no-fund --prefix $(VENV)/gltf-validator gltf-validator@2.0.0-dev.3.10 \
	    || echo "warning: could not install gltf-validator; the GLB validator test will be skipped"; \
	else echo "note: npm not found; the GLB validator test will be skipped"; fi
	@touch $(STAMP)

# $(call apt_missing,PACKAGES,what goes without them): install the missing ones as root, else say the command.
define apt_missing
	@missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing system packages: $$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || echo "warning: could not install $$missing; $(2)"; \
	  else echo "warning: missing system packages ($$missing; $(2)); run: sudo apt-get install $$missing"; fi; \
	fi
endef

system-deps:
	$(call apt_missing,$(SYSTEM_PACKAGES),mesh ground-truth rendering will be unavailable)
	$(call apt_missing,$(BROWSER_PACKAGES),the viewer's browser test will be skipped)

demo: $(STAMP)
	$(VENV)/bin/vdm3d object --image src/vdm3d/assets/spot.png --out runs/demo/object --overwrite
	@echo "demo results: runs/demo/object/ (orbit.mp4, splats.ply, mesh.glb, turntable.mp4, manifest.json)"

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup -q

test-quick: $(STAMP)
	$(PY) -m pytest -n 2 -q -m "not slow"

bench: $(STAMP)
	$(PY) benchmarks/render.py

clean:
	rm -rf $(VENV) .pytest_cache runs
