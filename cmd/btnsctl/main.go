// Command btnsctl is the administrator's tool for btnsd: keys, policies,
// latches. Run `btnsctl --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/btnsd/btnsd/cmd/btnsctl/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx)
	stop()
	os.Exit(code)
}
