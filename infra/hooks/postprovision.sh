#!/bin/sh
# azd postprovision hook (azure.yaml): after the registrations and the infrastructure exist, the
# Dataverse org still has to know the app. This prints the one command that connects it
# (python -m shared.connect, docs/runbook.md section 2), with this environment's values; azd passes
# the environment's values (the Bicep outputs among them) as environment variables.
# With HUNTER_CONNECT_ON_PROVISION=true it runs the command itself, signed in with the Azure CLI
# login of the person running azd (who must be a System Administrator of the Dataverse
# environment, on a machine where `make setup` has run).
set -eu

ORG="${HUNTER_D365_BASE_URL:-}"
APP_ID="${HUNTER_CONNECT_APPLICATION_ID:-}"
if [ -z "$ORG" ] || [ -z "$APP_ID" ]; then
  echo "postprovision: HUNTER_D365_BASE_URL or HUNTER_CONNECT_APPLICATION_ID is not set; see docs/deploy.md" >&2
  exit 0
fi
COMMAND="python -m shared.connect --org $ORG --application-id $APP_ID --auth azure-cli"

echo
echo "Next: connect the Dynamics 365 org as its administrator (docs/runbook.md section 2)."
echo "Plan first, then the same without --dry-run:"
echo
echo "    $COMMAND --dry-run"
echo "    $COMMAND"
echo

if [ "${HUNTER_CONNECT_ON_PROVISION:-false}" = "true" ]; then
  PYTHON=".venv/bin/python"
  [ -x "$PYTHON" ] || PYTHON=python3
  echo "HUNTER_CONNECT_ON_PROVISION=true: running it now"
  exec $PYTHON -m shared.connect --org "$ORG" --application-id "$APP_ID" --auth azure-cli
fi
