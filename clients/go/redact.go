package statefulroute

import (
	"net/url"
	"regexp"
	"strings"
)

// Mask replaces credentials in printed URLs.
const Mask = "***"

// Unprintable stands for text that is not a URL (nothing in it can be told apart from a password).
const Unprintable = "<a Redis URL that cannot be shown>"

var (
	schemeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*://`)
	inTextRE = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)(\S*)`)
	// A query option and its value: from '?' or '&' to the next '&', '#' or whitespace.
	queryOptionRE = regexp.MustCompile(`([?&])([^=&#\s]*)=([^&#\s]*)`)
)

// RedactURL returns url with its user and password replaced by "***", found by the URL's
// structure (everything between "://" and the last '@'), so a password holding '@', ':', '/'
// or '?' unencoded is hidden whole; a placeholder if url has no scheme. As core/urls.py.
func RedactURL(url string) string {
	head := schemeRE.FindString(url)
	if head == "" {
		return Unprintable
	}
	return head + hideUserinfo(url[len(head):])
}

// RedactText returns text with the user and password of every URL in it replaced by "***".
func RedactText(text string) string {
	return inTextRE.ReplaceAllStringFunc(text, func(m string) string {
		parts := inTextRE.FindStringSubmatch(m)
		return parts[1] + hideUserinfo(parts[2])
	})
}

func hideUserinfo(rest string) string {
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		rest = Mask + "@" + rest[at+1:]
	}
	return hidePasswordOptions(rest)
}

// hidePasswordOptions masks the value of every query option whose name, decoded, holds
// "password" (?password=, sentinel_password, pass%77ord): a password given that way is as secret
// as the userinfo's.
func hidePasswordOptions(rest string) string {
	return queryOptionRE.ReplaceAllStringFunc(rest, func(m string) string {
		parts := queryOptionRE.FindStringSubmatch(m)
		name, err := url.QueryUnescape(parts[2])
		if err != nil {
			name = parts[2]
		}
		if !strings.Contains(strings.ToLower(name), "password") {
			return m
		}
		return parts[1] + parts[2] + "=" + Mask
	})
}
