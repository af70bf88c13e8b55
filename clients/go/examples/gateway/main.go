// Command gateway is an example HTTP gateway on the Go client: GET /route?uid=<uid> answers
// which pod of the service the user must use, as JSON:
//
//	200 {"uid": "user-42", "pod": 3, "host": "room-3.room.games.svc.cluster.local"}
//	503 {"error": "pod pending", "retry_after_ms": 1500}   PodPending: retry soon
//	503 {"error": "no available pod"}                     no pod takes new users now
//	503 {"error": "store unavailable"}                    Redis did not answer in time
//	400 {"error": "uid: ..."}                             a malformed uid
//
// Configuration from the environment: REDIS_URL (default redis://127.0.0.1:6379/0), NAMESPACE
// (games), SERVICE (room), LISTEN (127.0.0.1:8080). It stops on SIGINT or SIGTERM.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	statefulroute "github.com/stateful-route/stateful-route/clients/go"
)

func main() {
	if err := run(); err != nil {
		slog.Error("gateway stopped", "error", err)
		os.Exit(1)
	}
}

func env(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	namespace, service := env("NAMESPACE", "games"), env("SERVICE", "room")

	rdb, err := statefulroute.Connect(env("REDIS_URL", "redis://127.0.0.1:6379/0"))
	if err != nil {
		return err // never holds the password
	}
	defer rdb.Close()
	client, err := statefulroute.NewClientDriver(rdb, statefulroute.Options{Namespaces: []string{namespace}})
	if err != nil {
		return err
	}
	defer client.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /route", func(w http.ResponseWriter, r *http.Request) {
		uid := r.URL.Query().Get("uid")
		pod, err := client.ComputeLinkedPod(r.Context(), namespace, uid, service)
		var pending *statefulroute.PodPendingError
		switch {
		case err == nil:
			host := fmt.Sprintf("%s-%d.%s.%s.svc.cluster.local", service, pod, service, namespace)
			reply(w, http.StatusOK, map[string]any{"uid": uid, "pod": pod, "host": host})
		case errors.As(err, &pending): // the user's pod is being replaced: retry soon
			w.Header().Set("Retry-After", "1")
			reply(w, http.StatusServiceUnavailable, map[string]any{
				"error": "pod pending", "retry_after_ms": pending.WaitAtMost.Milliseconds()})
		case errors.Is(err, statefulroute.ErrNoAvailablePod):
			reply(w, http.StatusServiceUnavailable, map[string]any{"error": "no available pod"})
		case errors.Is(err, statefulroute.ErrInvalidInput):
			reply(w, http.StatusBadRequest, map[string]any{"error": err.Error()})
		case errors.Is(err, statefulroute.ErrStoreUnavailable):
			reply(w, http.StatusServiceUnavailable, map[string]any{"error": "store unavailable"})
		default: // ErrLayoutTooNew (upgrade this gateway), another store error, a cancelled request
			slog.Error("lookup failed", "uid", uid, "error", err)
			reply(w, http.StatusInternalServerError, map[string]any{"error": "internal error"})
		}
	})
	server := &http.Server{Addr: env("LISTEN", "127.0.0.1:8080"), Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = server.Shutdown(shutdown)
	}()
	slog.Info("gateway listening", "addr", server.Addr, "namespace", namespace, "service", service)
	if err := server.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func reply(w http.ResponseWriter, status int, body map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}
