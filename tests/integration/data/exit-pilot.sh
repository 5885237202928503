#!/bin/bash
# Stand-in pilot for the accounting tests: a drone that ends by itself at once, with the
# exit status STANDIN_EXIT, as a pilot refusing its node (exit 10) or crashing does.
echo "started drone ${TardisDroneUuid:-?} cores=${TardisDroneCores:-?}"
exit "${STANDIN_EXIT:-0}"
