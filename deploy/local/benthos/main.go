// Command benthos is Benthos v4.27.0 with every component, built by `make bench-peers` as the
// peer that robolake's collector and writer are measured against (services/robolake/bench/peers.py).
package main

import (
	"context"

	_ "github.com/benthosdev/benthos/v4/public/components/all"
	"github.com/benthosdev/benthos/v4/public/service"
)

func main() {
	service.RunCLI(context.Background())
}
