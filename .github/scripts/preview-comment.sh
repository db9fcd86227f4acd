#!/usr/bin/env bash
# Posts a stack's `pulumi preview --diff` as one pull request comment, and
# edits that same comment on later pushes instead of adding another.
# Needs GH_TOKEN, GITHUB_REPOSITORY, PR, STACK and OUTCOME; $1 is the preview.
set -euo pipefail
file=$1
marker="<!-- tally-preview:${STACK} -->"
status="✅ succeeded"
[ "$OUTCOME" = success ] || status="❌ failed"

# GitHub caps a comment at 65,536 characters; keep the end, where the summary is.
diff=$(tail -c 60000 "$file" 2>/dev/null || echo "(no output)")
# shellcheck disable=SC2016 # the backticks are Markdown
body=$(printf '%s\n### Pulumi preview: `%s` %s\n\n<details open><summary>pulumi preview --diff</summary>\n\n```diff\n%s\n```\n</details>\n\nCommit %s · [run](%s/%s/actions/runs/%s)\n' \
	"$marker" "$STACK" "$status" "$diff" "${GITHUB_SHA:-}" "${GITHUB_SERVER_URL:-https://github.com}" "$GITHUB_REPOSITORY" "${GITHUB_RUN_ID:-}")

id=$(gh api --paginate "repos/$GITHUB_REPOSITORY/issues/$PR/comments" \
	--jq ".[] | select(.body | startswith(\"$marker\")) | .id" | head -n1)
if [ -n "$id" ]; then
	gh api --method PATCH "repos/$GITHUB_REPOSITORY/issues/comments/$id" -f body="$body" >/dev/null
else
	gh api --method POST "repos/$GITHUB_REPOSITORY/issues/$PR/comments" -f body="$body" >/dev/null
fi
