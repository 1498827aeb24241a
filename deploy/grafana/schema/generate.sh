#!/usr/bin/env bash
# Regenerate dashboard-13.2.3.schema.json from @grafana/schema 13.2.3 (needs node and npm; not run in CI).
# Usage: bash deploy/grafana/schema/generate.sh [WORKDIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${1:-$(mktemp -d)}"
cd "$work"
npm pack @grafana/schema@13.2.3
tar xzf grafana-schema-13.2.3.tgz
npm install --no-audit --no-fund ts-json-schema-generator@2.4.0 typescript@5.9.3
cat > tsconfig.json <<'JSON'
{"compilerOptions": {"strict": true, "skipLibCheck": true, "moduleResolution": "node", "target": "es2020"},
 "files": ["package/dist/types/raw/dashboard/x/types.gen.d.ts"]}
JSON
npx ts-json-schema-generator --path package/dist/types/raw/dashboard/x/types.gen.d.ts --type Dashboard \
    --tsconfig tsconfig.json --no-type-check -o dashboard.schema.json
sha256sum grafana-schema-13.2.3.tgz package/dist/types/raw/dashboard/x/types.gen.d.ts
grep -n "schemaVersion" package/dist/esm/raw/dashboard/x/types.gen.mjs
cmp dashboard.schema.json "$here/dashboard-13.2.3.schema.json" && echo "same as the schema in the repository"
