#!/usr/bin/env bash
# The arm64 stage of the test command: the project's own integration tests, run against the
# cross-built arm64 `handler` booted in an emulated arm64 machine (scripts/arm64-guest.sh), one
# guest per started process, over real sockets, with Azurite on the host.
#
#   scripts/test-arm64.sh [ARM64_BINARY]
#     ARM64_BINARY defaults to `scripts/build-arm64.sh --features emulator`: like the native tests'
#     binary, it has the `emulator` feature, without which MEDIFLOW_QUEUE (Azurite by key) is refused
#
# Which tests, and why these (docs/adr/0009-arm64-cross-build-and-emulation.md): each started
# process costs a guest boot (~5 s alone, more on a loaded machine), so the stage runs the tests
# that prove the arm64 build works end to end, not the whole suite twice:
#   - the HTTP contract (create/get in contract order, every 422, 404s, bad bodies, other paths,
#     in-process batches, the OpenAPI document): natively these cases call the router in process;
#     with MEDIFLOW_TEST_BINARY set, `support::router::spawn_app` starts that binary instead and
#     sends the same requests over a socket;
#   - durability: acknowledged records survive a hard stop of the guest (kill -9 of qemu) with the
#     data on a virtio-blk disk image that outlives it;
#   - the Functions host protocol (custom-handler mode, every invocation shape);
#   - the queue trigger through Azurite on the host (ingest, redelivery, 202 queued + completion).
# Left to the native run only: timing tests of the HTTP server (stalled clients), SIGTERM drains
# (the guest does not forward SIGTERM to the handler), the Cosmos emulator tests (the same SDK code
# as native; TLS to the host emulator is not set up in the guest, so the Functions-host tests of
# store outages and poisoned batches, which use it, run natively only), property and soak tests.
set -euo pipefail
cd "$(dirname "$0")/.."

binary="${1:-}"
if [[ -z "$binary" ]]; then
  binary="$(scripts/build-arm64.sh --features emulator)"
fi
launcher="$(scripts/arm64-guest.sh prepare "$binary")"

filter='
  test(/^http_api::embedded::(create_answers_201|get_returns_exactly|every_field_error|unknown_and_malformed_ids|batches_ingest_in_process)/)
| test(/^http_api::(bodies_that_are_not_records_get_clear_4xx_answers|other_paths_and_methods_answer_like_the_old_service|the_openapi_document_lists_every_http_function|metrics_move_to_their_own_port_when_configured)$/)
| test(/^durability::every_acknowledged_record_survives_kill_9_and_restart$/)
| (test(/^functions_host::/) & not test(/(waits_out_a_store_outage|a_failed_last_attempt|redrive_mark_failed)/))
| test(/^queue_trigger::(queue_messages_are_ingested_and_redelivery_or_resubmission_adds_nothing|post_batches_with_a_queue_answers_202_queued_and_the_trigger_completes_it)$/)'

# Two guests at a time (each has two virtual CPUs); a boot may take half a minute on a busy machine.
MEDIFLOW_TEST_BINARY="$launcher" MEDIFLOW_TEST_START_SLACK_SECS=90 \
  cargo nextest run --package handler --all-features --test integration --test-threads 2 \
  --no-fail-fast -E "$(tr -d '\n' <<<"$filter")"
