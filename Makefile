# Each target is a one-line call into hack/, where the logic lives.
.PHONY: setup test lint demo cluster-up cluster-down bench chaos manifests image

setup:        ; @bash hack/setup.sh
test:         ; @bash hack/test.sh
lint:         ; @bash hack/lint.sh
demo:         ; @bash hack/demo.sh
cluster-up:   ; @bash hack/cluster-up.sh
cluster-down: ; @bash hack/cluster-down.sh
bench:        ; @bash hack/bench.sh
chaos:        ; @bash hack/chaos.sh
manifests:    ; @bash hack/manifests.sh
image:        ; @bash hack/image.sh
