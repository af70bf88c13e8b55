// Command interop is a Go gateway driven by tests/e2e/test_go_interop.py: it asks
// ComputeLinkedPod for every uid read on stdin (one a line) and prints one line per answer:
//
//	<uid> <pod> <start> <end>          the answer, start and end in Unix seconds (wall clock)
//	<uid> !<Kind> <start> <end>        NoAvailablePod, PodPending, StoreUnavailable, or
//	                                   Unexpected:<message> (spaces replaced by _)
//
// It prints "ready" once its ClientDriver follows the change channel, and exits at the end of
// its input.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/stateful-route/stateful-route/clients/go/internal/harness"
)

func main() {
	service := flag.String("service", "room", "service")
	harness.Main("interop", func(ctx context.Context, env harness.Env) error { return run(ctx, env, *service) })
}

func run(ctx context.Context, env harness.Env, service string) error {
	client, err := env.NewClientDriver(0)
	if err != nil {
		return err
	}
	defer client.Close()
	if err := client.Subscribed(ctx); err != nil {
		return err
	}
	in := bufio.NewReaderSize(os.Stdin, 1<<16)
	out := bufio.NewWriterSize(os.Stdout, 1<<16)
	defer out.Flush()
	fmt.Fprintln(out, "ready")
	out.Flush()
	for {
		line, err := in.ReadString('\n')
		uid := strings.TrimSpace(line)
		if uid != "" {
			start := harness.Now()
			pod, err := client.ComputeLinkedPod(ctx, env.Namespace, uid, service)
			end := harness.Now()
			if err != nil {
				fmt.Fprintf(out, "%s !%s %.6f %.6f\n", uid, kind(err), start, end)
			} else {
				fmt.Fprintf(out, "%s %d %.6f %.6f\n", uid, pod, start, end)
			}
		}
		if err != nil {
			return nil // end of input
		}
		if in.Buffered() == 0 { // answered everything asked so far
			if err := out.Flush(); err != nil {
				return err
			}
		}
	}
}

// kind is an error's kind; an unexpected one carries its message.
func kind(err error) string {
	name := harness.Name(err, harness.PodPending, harness.NoAvailablePod, harness.StoreUnavailable)
	if name == harness.Unexpected {
		return name + ":" + harness.Field(err)
	}
	return name
}
