package statefulroute

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Mode is how a RedisConfig reaches Redis.
type Mode int

const (
	// Standalone is one server: redis://host:port/db.
	Standalone Mode = iota
	// Cluster is a Redis Cluster through a seed node: redis://host:port/0?cluster=true.
	Cluster
	// Sentinel is the primary Redis Sentinels name: redis+sentinel://s1,s2,s3/<master>/db.
	Sentinel
)

func (m Mode) String() string {
	switch m {
	case Cluster:
		return "cluster"
	case Sentinel:
		return "sentinel"
	default:
		return "standalone"
	}
}

// RedisConfig is what a Redis URL says, in the forms the Python client accepts
// (store/connection.py):
//
//	redis://[[user]:password@]host[:port][/db][?options]       one server
//	rediss://...                                                 the same over TLS
//	redis://host:port/0?cluster=true                             a Redis Cluster (rediss:// too)
//	redis+sentinel://[[user]:password@]h[:p][,h[:p]...]/<master>[/db]  the primary of <master>
//	rediss+sentinel://...                                        the same over TLS
//
// A Sentinel's port defaults to 26379; the credentials are the primary's (the Sentinels are
// reached without them). Options: db, socket_timeout, socket_connect_timeout (seconds),
// client_name, max_connections, protocol (2 or 3), ssl_ca_certs, ssl_certfile, ssl_keyfile,
// ssl_cert_reqs (required, optional, none), ssl_check_hostname, cluster. The Go client refuses
// other options (redis-py would pass them to its connections).
//
// String and GoString never show the credentials.
type RedisConfig struct {
	Mode       Mode
	TLS        bool
	Addrs      []string // the server, the cluster's seed node, or the Sentinels ("host:port")
	MasterName string   // Sentinel: whose primary
	DB         int
	Username   string
	Password   string

	SocketTimeout        time.Duration // 0: go-redis's default
	SocketConnectTimeout time.Duration // 0: go-redis's default
	ClientName           string
	MaxConnections       int // 0: go-redis's default pool size
	Protocol             int // 0: go-redis's default (RESP3, falling back to 2)

	CACertsFile   string // PEM file of the CAs to trust (default: the system's)
	CertFile      string // client certificate (PEM), with KeyFile
	KeyFile       string
	CertReqs      string // "required" (default), "optional" or "none" (no verification)
	CheckHostname bool   // verify the server's name (default true)

	redacted string
}

// String is the URL with its credentials replaced by "***".
func (c RedisConfig) String() string { return c.redacted }

// GoString is the same as String, so %#v shows no password either.
func (c RedisConfig) GoString() string { return "statefulroute.RedisConfig(" + c.redacted + ")" }

const (
	encodeHint   = " (percent-encode '/', '?', '#' and '@' inside a password: %2F %3F %23 %40)"
	badPort      = "the port must be a number from 0 to 65535"
	sentinelPort = 26379
	defaultPort  = 6379
)

var (
	sentinelSchemes = map[string]bool{"redis+sentinel": false, "rediss+sentinel": true} // -> TLS
	dbPathRE        = regexp.MustCompile(`^(/?|/[0-9]+)$`)
	truthy          = map[string]bool{"1": true, "true": true, "yes": true, "on": true}
)

// urlParts is Python's urlsplit: scheme://netloc/path?query#fragment, split by structure.
type urlParts struct {
	scheme, netloc, path, query string
}

func splitURL(raw string) (urlParts, bool) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok || !regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*$`).MatchString(scheme) {
		return urlParts{}, false
	}
	p := urlParts{scheme: strings.ToLower(scheme)}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	p.netloc, rest = rest[:end], rest[end:]
	rest, _, _ = strings.Cut(rest, "#")
	p.path, p.query, _ = strings.Cut(rest, "?")
	return p, true
}

// afterAuthority is what follows the URL's authority: it begins at the first '/', '?' or '#'
// after "://".
func afterAuthority(raw string) string {
	_, rest, _ := strings.Cut(raw, "://")
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		return rest[i:]
	}
	return ""
}

// unquote decodes %XX escapes as Python's urllib.parse.unquote does (invalid ones stay).
func unquote(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return strings.ToValidUTF8(b.String(), "\uFFFD")
}

// hostPort splits "host[:port]" or "[v6][:port]" as urlsplit does (hostname lowercased).
func hostPort(hostinfo string) (host string, port int, hasPort bool, err error) {
	var portText string
	if strings.HasPrefix(hostinfo, "[") || strings.Contains(hostinfo, "[") {
		_, bracketed, _ := strings.Cut(hostinfo, "[")
		inside, after, ok := strings.Cut(bracketed, "]")
		if !ok || net.ParseIP(inside) == nil {
			return "", 0, false, errCannotParse
		}
		host = inside
		_, portText, _ = strings.Cut(after, ":")
	} else {
		if strings.Contains(hostinfo, "]") {
			return "", 0, false, errCannotParse
		}
		host, portText, _ = strings.Cut(hostinfo, ":")
	}
	host = strings.ToLower(host)
	if portText == "" {
		return host, 0, false, nil
	}
	for _, r := range portText {
		if r < '0' || r > '9' {
			return "", 0, false, errBadPort
		}
	}
	port, convErr := strconv.Atoi(portText)
	if convErr != nil || port > 65535 {
		return "", 0, false, errBadPort
	}
	return host, port, true, nil
}

var (
	errCannotParse = invalid("redis_url", "cannot be parsed"+encodeHint)
	errBadPort     = invalid("redis_url", badPort+encodeHint)
)

// ParseRedisURL reads a Redis URL (see RedisConfig). A malformed one is an *InvalidInputError
// (Field "redis_url") whose message names the problem and never echoes the URL or a part of
// it: a password that breaks the URL's structure would be what got echoed. No I/O.
func ParseRedisURL(raw string) (*RedisConfig, error) {
	if strings.Contains(afterAuthority(raw), "@") {
		// redis://user:2024/x@host: the password's '/' ended the authority, which then reads
		// as host "user" and port "2024"; a connection error would print both.
		return nil, invalid("redis_url", "has an '@' after its host"+encodeHint)
	}
	parts, ok := splitURL(raw)
	if !ok {
		return nil, invalid("redis_url", "must start with redis://, rediss://, redis+sentinel:// or rediss+sentinel://")
	}
	if parts.netloc == "" {
		// Python's urlunsplit drops the "//" of an empty authority, and refuses the rest.
		return nil, invalid("redis_url", "must start with redis://, rediss://, redis+sentinel:// or rediss+sentinel://")
	}
	query, cluster, err := parseQuery(parts.query)
	if err != nil {
		return nil, err
	}
	cfg := &RedisConfig{CertReqs: "required", CheckHostname: true, redacted: RedactURL(raw)}
	if tls, isSentinel := sentinelSchemes[parts.scheme]; isSentinel {
		if cluster {
			return nil, invalid("redis_url", "cluster=true does not apply to a Sentinel URL")
		}
		cfg.Mode, cfg.TLS = Sentinel, tls
		if err := cfg.sentinel(parts); err != nil {
			return nil, err
		}
	} else {
		if parts.scheme != "redis" && parts.scheme != "rediss" {
			return nil, invalid("redis_url", "must start with redis://, rediss://, redis+sentinel:// or rediss+sentinel://")
		}
		cfg.TLS = parts.scheme == "rediss"
		if cluster {
			cfg.Mode = Cluster
		}
		if err := cfg.server(parts); err != nil {
			return nil, err
		}
	}
	if err := cfg.options(query); err != nil {
		return nil, err
	}
	if cfg.Mode == Cluster && cfg.DB != 0 {
		return nil, invalid("redis_url", "a Redis Cluster has only database 0")
	}
	return cfg, nil
}

func (c *RedisConfig) credentials(userinfo string) {
	user, password, _ := strings.Cut(userinfo, ":")
	c.Username, c.Password = unquote(user), unquote(password)
}

func (c *RedisConfig) server(p urlParts) error {
	at := strings.LastIndexByte(p.netloc, '@')
	hostinfo := p.netloc[at+1:]
	if at >= 0 {
		c.credentials(p.netloc[:at])
	}
	if strings.Contains(hostinfo, "[") != strings.Contains(hostinfo, "]") {
		return errCannotParse
	}
	host, port, hasPort, err := hostPort(hostinfo)
	if err != nil {
		return err
	}
	if host == "" {
		host = "localhost"
	}
	if !hasPort || port == 0 {
		port = defaultPort
	}
	c.Addrs = []string{net.JoinHostPort(unquote(host), strconv.Itoa(port))}
	if !dbPathRE.MatchString(p.path) {
		// redis-py reads "/0/1" as db 1 and "/x" as db 0: say so instead of guessing.
		return invalid("redis_url", "the database after the host must be a number, as in /0")
	}
	if db := strings.TrimPrefix(p.path, "/"); db != "" {
		n, err := strconv.Atoi(db)
		if err != nil || n > maxInt {
			return invalid("redis_url", "the database after the host must be a number, as in /0")
		}
		c.DB = n
	}
	return nil
}

func (c *RedisConfig) sentinel(p urlParts) error {
	at := strings.LastIndexByte(p.netloc, '@')
	if at >= 0 {
		c.credentials(p.netloc[:at])
	}
	for _, hostinfo := range strings.Split(p.netloc[at+1:], ",") {
		// The address is not echoed: a password holding '/' ends up here.
		bad := invalid("redis_url", "a Sentinel address is not host[:port]"+encodeHint)
		if strings.Contains(hostinfo, "[") != strings.Contains(hostinfo, "]") {
			return bad
		}
		host, port, hasPort, err := hostPort(hostinfo)
		if err != nil || host == "" {
			return bad
		}
		if !hasPort || port == 0 {
			port = sentinelPort
		}
		c.Addrs = append(c.Addrs, net.JoinHostPort(unquote(host), strconv.Itoa(port)))
	}
	names := strings.Split(p.path, "/")[1:]
	if len(names) < 1 || len(names) > 2 || names[0] == "" {
		return invalid("redis_url", "must name the primary: redis+sentinel://host:port/<master-name>[/db]")
	}
	c.MasterName = unquote(names[0])
	if len(names) == 2 {
		n, err := strconv.Atoi(names[1])
		if err != nil || n < 0 || strings.ContainsAny(names[1], "+-") || names[1] == "" {
			return invalid("redis_url", "the database after the primary's name must be a number")
		}
		c.DB = n
	}
	return nil
}

type option struct{ name, value string }

// parseQuery returns the options (the first value of each, blank ones left out, as redis-py
// reads them) and whether any cluster flag is true.
func parseQuery(query string) ([]option, bool, error) {
	var out []option
	seen := map[string]bool{}
	cluster := false
	for _, pair := range strings.FieldsFunc(query, func(r rune) bool { return r == '&' || r == ';' }) {
		name, value, _ := strings.Cut(pair, "=")
		name, value = unquote(strings.ReplaceAll(name, "+", " ")), unquote(strings.ReplaceAll(value, "+", " "))
		if name == "cluster" {
			cluster = cluster || truthy[strings.ToLower(value)]
			continue
		}
		if value == "" || seen[name] {
			continue
		}
		seen[name] = true
		out = append(out, option{name, value})
	}
	return out, cluster, nil
}

func badValue(name string) error {
	return invalidf("redis_url", "Invalid value for '%s' in connection URL", name)
}

func seconds(name, value string) (time.Duration, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e9 {
		return 0, badValue(name)
	}
	return time.Duration(f * float64(time.Second)), nil
}

// pyBool is redis-py's to_bool: 0, f, false, n, no (any case) are false, anything else true.
func pyBool(value string) bool {
	switch strings.ToUpper(value) {
	case "0", "F", "FALSE", "N", "NO":
		return false
	}
	return true
}

func (c *RedisConfig) options(query []option) error {
	for _, o := range query {
		var err error
		switch o.name {
		case "db":
			c.DB, err = strconv.Atoi(strings.TrimSpace(o.value))
			if err != nil || c.DB < 0 {
				return badValue(o.name)
			}
		case "socket_timeout":
			c.SocketTimeout, err = seconds(o.name, o.value)
		case "socket_connect_timeout":
			c.SocketConnectTimeout, err = seconds(o.name, o.value)
		case "client_name":
			c.ClientName = o.value
		case "max_connections":
			c.MaxConnections, err = strconv.Atoi(strings.TrimSpace(o.value))
			if err != nil || c.MaxConnections < 1 {
				return badValue(o.name)
			}
		case "protocol":
			c.Protocol, err = strconv.Atoi(strings.TrimSpace(o.value))
			if err != nil || (c.Protocol != 2 && c.Protocol != 3) {
				return badValue(o.name)
			}
		case "ssl_ca_certs":
			c.CACertsFile = o.value
		case "ssl_certfile":
			c.CertFile = o.value
		case "ssl_keyfile":
			c.KeyFile = o.value
		case "ssl_cert_reqs":
			switch strings.ToLower(o.value) {
			case "required", "optional", "none":
				c.CertReqs = strings.ToLower(o.value)
			default:
				return badValue(o.name)
			}
		case "ssl_check_hostname":
			c.CheckHostname = pyBool(o.value)
		case "password", "username":
			// As redis-py: the userinfo's credentials win over the query's.
			if o.name == "password" && c.Password == "" {
				c.Password = o.value
			} else if o.name == "username" && c.Username == "" {
				c.Username = o.value
			}
		default:
			// Not named: an unencoded password's piece may be what reads as an option's name.
			return invalid("redis_url", "has a query option the Go client does not take")
		}
		if err != nil {
			return err
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return invalid("redis_url", "ssl_certfile and ssl_keyfile go together")
	}
	return nil
}

// TLSConfig is the TLS configuration the URL asks for (nil without TLS); it reads the files
// the URL names.
func (c *RedisConfig) TLSConfig() (*tls.Config, error) {
	if !c.TLS {
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CACertsFile != "" {
		pem, err := os.ReadFile(c.CACertsFile)
		if err != nil {
			return nil, invalidf("redis_url", "ssl_ca_certs: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, invalidf("redis_url", "ssl_ca_certs: no PEM certificate in %s", c.CACertsFile)
		}
		conf.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, invalidf("redis_url", "ssl_certfile/ssl_keyfile: %v", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	if c.CertReqs == "none" {
		conf.InsecureSkipVerify = true // asked for by ssl_cert_reqs=none
	} else if !c.CheckHostname {
		// Verify the chain, not the name (Go verifies both unless told otherwise).
		roots := conf.RootCAs
		conf.InsecureSkipVerify = true
		conf.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			return verifyChain(raw, roots)
		}
	}
	return conf, nil
}

func verifyChain(raw [][]byte, roots *x509.CertPool) error {
	if len(raw) == 0 {
		return fmt.Errorf("the server sent no certificate")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, der := range raw {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return err
		}
		certs[i] = cert
	}
	inter := x509.NewCertPool()
	for _, cert := range certs[1:] {
		inter.AddCert(cert)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
	return err
}

// UniversalOptions are go-redis options for the URL (TLS files read now).
func (c *RedisConfig) UniversalOptions() (*redis.UniversalOptions, error) {
	conf, err := c.TLSConfig()
	if err != nil {
		return nil, err
	}
	return &redis.UniversalOptions{
		Addrs:         append([]string(nil), c.Addrs...),
		MasterName:    c.MasterName,
		DB:            c.DB,
		Username:      c.Username,
		Password:      c.Password,
		ClientName:    c.ClientName,
		Protocol:      c.Protocol,
		DialTimeout:   c.SocketConnectTimeout,
		ReadTimeout:   c.SocketTimeout,
		WriteTimeout:  c.SocketTimeout,
		PoolSize:      c.MaxConnections,
		TLSConfig:     conf,
		IsClusterMode: c.Mode == Cluster,
		// A call ends at its context's deadline (the driver's Timeout), not only the sockets'.
		ContextTimeoutEnabled: true,
	}, nil
}

// NewClient connects per the URL: a *redis.Client, a *redis.ClusterClient with cluster=true,
// or a *PrimaryClient for the primary behind Redis Sentinel, found as the Python client finds
// it (every Sentinel at once, see PrimaryClient; the Sentinels are reached with the URL's TLS
// options but without the primary's credentials). Nothing is connected until the first command.
func (c *RedisConfig) NewClient() (redis.UniversalClient, error) {
	opts, err := c.UniversalOptions()
	if err != nil {
		return nil, err
	}
	switch c.Mode {
	case Cluster:
		return redis.NewClusterClient(opts.Cluster()), nil
	case Sentinel:
		simple := opts.Simple()
		return newPrimaryClient(c.MasterName, c.Addrs, simple), nil
	default:
		return redis.NewClient(opts.Simple()), nil
	}
}

// Connect parses url (ParseRedisURL) and returns a client for it (RedisConfig.NewClient):
// the Go counterpart of Python's stateful_route.store.connection.connect.
func Connect(url string) (redis.UniversalClient, error) {
	cfg, err := ParseRedisURL(url)
	if err != nil {
		return nil, err
	}
	return cfg.NewClient()
}
