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
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	statefulroute "github.com/stateful-route/stateful-route/clients/go"
)

func main() {
	url := flag.String("url", "redis://127.0.0.1:6379/0", "Redis URL")
	prefix := flag.String("prefix", "sr", "key prefix")
	namespace := flag.String("namespace", "games", "namespace")
	service := flag.String("service", "room", "service")
	flag.Parse()
	if err := run(*url, *prefix, *namespace, *service); err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		os.Exit(1)
	}
}

func run(url, prefix, namespace, service string) error {
	rdb, err := statefulroute.Connect(url)
	if err != nil {
		return err
	}
	defer rdb.Close()
	client, err := statefulroute.NewClientDriver(rdb, statefulroute.Options{Namespaces: []string{namespace}, Prefix: prefix})
	if err != nil {
		return err
	}
	defer client.Close()
	ctx := context.Background()
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
			start := now()
			pod, err := client.ComputeLinkedPod(ctx, namespace, uid, service)
			end := now()
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

func now() float64 { return float64(time.Now().UnixNano()) / 1e9 }

func kind(err error) string {
	switch {
	case errors.Is(err, statefulroute.ErrPodPending):
		return "PodPending"
	case errors.Is(err, statefulroute.ErrNoAvailablePod):
		return "NoAvailablePod"
	case errors.Is(err, statefulroute.ErrStoreUnavailable):
		return "StoreUnavailable"
	}
	return "Unexpected:" + strings.ReplaceAll(err.Error(), " ", "_")
}
