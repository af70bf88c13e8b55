package statefulroute

import (
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Mirrors tests/unit/test_sentinel_url.py, tests/unit/test_redaction.py and the bad URLs of
// tests/cli/test_bad_arguments.py.

func TestURLFormsParse(t *testing.T) {
	cases := []struct {
		url  string
		want RedisConfig
	}{
		{"redis://127.0.0.1:6379/0", RedisConfig{Mode: Standalone, Addrs: []string{"127.0.0.1:6379"}}},
		{"redis://redis", RedisConfig{Mode: Standalone, Addrs: []string{"redis:6379"}}},
		{"REDIS://H:1/", RedisConfig{Mode: Standalone, Addrs: []string{"h:1"}}},
		{"redis://:p%40ss@redis:6379/2", RedisConfig{Addrs: []string{"redis:6379"}, DB: 2, Password: "p@ss"}},
		{"redis://alice:pw@redis:6379/0", RedisConfig{Addrs: []string{"redis:6379"}, Username: "alice", Password: "pw"}},
		{"redis://:p@ss@h:1/0", RedisConfig{Addrs: []string{"h:1"}, Password: "p@ss"}}, // the last '@' ends the userinfo
		{"redis://[::1]:6380/2", RedisConfig{Addrs: []string{"[::1]:6380"}, DB: 2}},
		{"redis://h:1/0?db=3", RedisConfig{Addrs: []string{"h:1"}, DB: 3}},
		{"rediss://:pw@redis:6380/0?ssl_ca_certs=/etc/ca.pem", RedisConfig{TLS: true, Addrs: []string{"redis:6380"}, Password: "pw", CACertsFile: "/etc/ca.pem"}},
		{"redis://10.0.0.5:7000/0?cluster=true", RedisConfig{Mode: Cluster, Addrs: []string{"10.0.0.5:7000"}}},
		{"redis://h:1/0?cluster=TRUE", RedisConfig{Mode: Cluster, Addrs: []string{"h:1"}}},
		{"redis://h:1/0?cluster=no", RedisConfig{Mode: Standalone, Addrs: []string{"h:1"}}},
		{"rediss://h:1/0?cluster=1&ssl_cert_reqs=none", RedisConfig{Mode: Cluster, TLS: true, Addrs: []string{"h:1"}, CertReqs: "none"}},
		{"redis://h/0?socket_timeout=2&socket_connect_timeout=0.5&client_name=gw&max_connections=50&protocol=2",
			RedisConfig{Addrs: []string{"h:6379"}, SocketTimeout: 2 * time.Second, SocketConnectTimeout: 500 * time.Millisecond,
				ClientName: "gw", MaxConnections: 50, Protocol: 2}},
		{"redis://h/0?ssl_check_hostname=no", RedisConfig{Addrs: []string{"h:6379"}, CheckHostname: false}},
		// test_the_full_form_names_every_sentinel_the_primary_its_db_and_credentials
		{"redis+sentinel://app:p%40ss@s1:26380,s2,10.0.0.3:5000/mymaster/3", RedisConfig{Mode: Sentinel,
			Addrs: []string{"s1:26380", "s2:26379", "10.0.0.3:5000"}, MasterName: "mymaster", DB: 3, Username: "app", Password: "p@ss"}},
		// test_the_short_forms_default_the_db_and_the_port
		{"redis+sentinel://:secret@[::1]/cache", RedisConfig{Mode: Sentinel, Addrs: []string{"[::1]:26379"}, MasterName: "cache", Password: "secret"}},
		{"redis+sentinel://h:1/m", RedisConfig{Mode: Sentinel, Addrs: []string{"h:1"}, MasterName: "m"}},
		{"redis+sentinel://h/m?cluster=no", RedisConfig{Mode: Sentinel, Addrs: []string{"h:26379"}, MasterName: "m"}},
		// test_tls_and_query_options_apply_to_the_sentinels_and_the_primary
		{"rediss+sentinel://h:1/m?ssl_ca_certs=/ca.pem&socket_timeout=2", RedisConfig{Mode: Sentinel, TLS: true,
			Addrs: []string{"h:1"}, MasterName: "m", CACertsFile: "/ca.pem", SocketTimeout: 2 * time.Second}},
	}
	for _, c := range cases {
		t.Run(c.url, func(t *testing.T) {
			got, err := ParseRedisURL(c.url)
			if err != nil {
				t.Fatalf("ParseRedisURL: %v", err)
			}
			want := c.want
			if want.CertReqs == "" {
				want.CertReqs = "required"
			}
			if !strings.Contains(c.url, "ssl_check_hostname") {
				want.CheckHostname = true
			}
			want.redacted = RedactURL(c.url)
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("got  %+v\nwant %+v", fields(*got), fields(want))
			}
		})
	}
}

// fields prints every field (RedisConfig's own String hides the password).
func fields(c RedisConfig) string {
	type plain RedisConfig
	return fmt.Sprintf("%+v", plain(c))
}

func TestMalformedURLsAreInvalidInputNamingTheProblemNotTheURL(t *testing.T) {
	cases := []struct{ url, says string }{
		{"redis://:Sekr/Etpw@127.0.0.1:6379/0", "after its host"},
		{"redis://Sekr:2024/Etpw@127.0.0.1:6399/0", "after its host"},
		{"redis://127.0.0.1:abc/0", "port"},
		{"redis://127.0.0.1:99999/0", "port"},
		{"redis://127.0.0.1:6379/0?socket_timeout=abc", "socket_timeout"},
		{"redis+sentinel://:Sekr/Etpw@s1:26379/mymaster", "after its host"},
		{"redis://[::1/0", "cannot be parsed"},
		{"redis://127.0.0.1:6379/0/1", "database"},
		{"redis://127.0.0.1:6379/x", "database"},
		{"redis://127.0.0.1:6379/-1", "database"},
		{"redis://h:1/0?db=x", "'db'"},
		{"http://127.0.0.1/0", "must start with"},
		{"redis:///0", "must start with"},
		{"Sekr:Etpw@127.0.0.1", "must start with"},
		// test_a_malformed_sentinel_url_is_invalid_input
		{"redis+sentinel://h:1", "must name the primary"},
		{"redis+sentinel://h:1/", "must name the primary"},
		{"redis+sentinel://h:1/m/0/extra", "must name the primary"},
		{"redis+sentinel://h:1/m/zero", "must be a number"},
		{"redis+sentinel://h:1/m/", "must be a number"},
		{"redis+sentinel://h:1/m/-1", "must be a number"},
		{"redis+sentinel://h:port/m", "Sentinel address"},
		{"redis+sentinel://h:1,,h:2/m", "Sentinel address"},
		{"redis+sentinel://h:1/m?cluster=true", "cluster=true"},
		{"sentinel://h:1/m", "must start with"},
		// Stricter than Python, which defers these to connecting:
		{"redis://h/0?foo=bar", "does not take"},
		{"redis://:Sekr@h/0?Etpw=1", "does not take"}, // an option's name is never echoed
		{"redis://h/0?socket_timeout=-1", "socket_timeout"},
		{"redis://h/3?cluster=true", "database 0"},
	}
	for _, c := range cases {
		t.Run(c.url, func(t *testing.T) {
			_, err := ParseRedisURL(c.url)
			var bad *InvalidInputError
			if !errors.As(err, &bad) || !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("want *InvalidInputError, got %v", err)
			}
			if bad.Field != "redis_url" || !strings.Contains(err.Error(), c.says) {
				t.Errorf("want redis_url saying %q, got %v", c.says, err)
			}
			for _, secret := range []string{"Sekr", "Etpw"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error echoes the URL: %v", err)
				}
			}
		})
	}
}

// Distinctive pieces, so finding one in the output means the password leaked (as
// test_no_piece_of_a_password_survives_redaction, with a fixed set instead of hypothesis).
var passwords = []string{"ABCD@EFGH", "ABCD:EFGH", "ABCD/EFGH", "ABCD?EFGH", "ABCD#EFGH", "ABCD%EFGH",
	"ABCD=EFGH&IJKL", "ABCD", "ABCD@EFGH:IJKL/MNPQ?RSTU#VWXY"}

var forms = []string{
	"redis://{auth}127.0.0.1:6379/0",
	"rediss://{auth}redis.example:6380/0?ssl_ca_certs=/etc/ca.pem",
	"redis://{auth}10.0.0.5:7000/0?cluster=true",
	"redis+sentinel://{auth}s1:26379,s2:26379/mymaster/0",
	"rediss+sentinel://{auth}s1/mymaster",
}

func TestNoPieceOfAPasswordSurvives(t *testing.T) {
	for _, pw := range passwords {
		for _, user := range []string{"", "alice"} {
			for _, form := range forms {
				for _, written := range []string{pw, url.QueryEscape(pw)} {
					raw := strings.Replace(form, "{auth}", user+":"+written+"@", 1)
					shown := []string{RedactURL(raw), RedactText("event=start redis=" + raw + " prefix=sr")}
					if cfg, err := ParseRedisURL(raw); err != nil {
						shown = append(shown, err.Error())
					} else {
						shown = append(shown, cfg.String(), fmt.Sprintf("%v %+v %#v %s", *cfg, *cfg, *cfg, cfg))
					}
					for _, text := range shown {
						for _, piece := range []string{"ABCD", "EFGH", "IJKL", "MNPQ", "RSTU", "VWXY"} {
							if strings.Contains(pw, piece) && strings.Contains(text, piece) {
								t.Fatalf("%q leaks %q: %s", raw, piece, text)
							}
						}
					}
				}
			}
		}
	}
}

func TestAPasswordGivenAsAQueryOptionIsUsedAndHidden(t *testing.T) {
	for _, name := range []string{"password", "sentinel_password", "ssl_password", "Password", "pass%77ord"} {
		for _, form := range []string{"redis://127.0.0.1:6379/0?%s=%s&db=1", "redis+sentinel://s1,s2/m/0?%s=%s#f"} {
			raw := fmt.Sprintf(form, name, url.QueryEscape("ABCD&EFGH"))
			for _, text := range []string{RedactURL(raw), RedactText("error: " + raw + ": down")} {
				if strings.Contains(text, "ABCD") || strings.Contains(text, "EFGH") {
					t.Errorf("%q leaks: %s", raw, text)
				}
			}
		}
	}
	cfg, err := ParseRedisURL("redis://127.0.0.1:6379/0?password=" + url.QueryEscape("p&w") + "&username=bob")
	if err != nil || cfg.Password != "p&w" || cfg.Username != "bob" {
		t.Fatalf("want the query's credentials, got %v %v", cfg, err)
	}
	cfg, err = ParseRedisURL("redis://alice:pw@127.0.0.1:6379/0?password=other&username=bob")
	if err != nil || cfg.Password != "pw" || cfg.Username != "alice" {
		t.Fatalf("want the userinfo's credentials to win, as redis-py, got %v %v", cfg, err)
	}
}

func TestTheRestOfTheURLStaysReadable(t *testing.T) {
	for in, want := range map[string]string{
		"rediss://alice:p@ss:w/rd@redis.example:6380/0?ssl_ca_certs=/etc/ca.pem": "rediss://***@redis.example:6380/0?ssl_ca_certs=/etc/ca.pem",
		"redis://127.0.0.1:6379/0":                "redis://127.0.0.1:6379/0",
		"secret:pw@host:6379":                     Unprintable,
		"rediss+sentinel://u:pw@s1,s2/mymaster/0": "rediss+sentinel://***@s1,s2/mymaster/0",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOptionsForGoRedis(t *testing.T) {
	cfg, err := ParseRedisURL("redis+sentinel://u:pw@s1:1,s2:2/mymaster/4?socket_timeout=1.5")
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cfg.UniversalOptions()
	if err != nil {
		t.Fatal(err)
	}
	failover := opts.Failover()
	if failover.MasterName != "mymaster" || failover.DB != 4 || failover.Password != "pw" || failover.Username != "u" ||
		failover.SentinelPassword != "" || failover.SentinelUsername != "" || failover.ReadTimeout != 1500*time.Millisecond ||
		!reflect.DeepEqual(failover.SentinelAddrs, []string{"s1:1", "s2:2"}) {
		t.Errorf("failover options: %+v", failover)
	}
	cfg, _ = ParseRedisURL("rediss://h:1/0?cluster=true&ssl_cert_reqs=none")
	opts, err = cfg.UniversalOptions()
	if err != nil || !opts.IsClusterMode || opts.TLSConfig == nil || !opts.TLSConfig.InsecureSkipVerify {
		t.Errorf("cluster TLS options: %+v %v", opts, err)
	}
	cfg, _ = ParseRedisURL("rediss://h:1/0?ssl_ca_certs=/nonexistent/ca.pem")
	if _, err := cfg.UniversalOptions(); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("a missing CA file: %v", err)
	}
}
