package tufota

import (
	"fmt"
	"strings"
)

// MaxNameLen is the longest release name, file name or device ID accepted.
const MaxNameLen = 64

// ValidateName checks a release name, file base name, device ID or hardware
// ID: 1 to 64 characters from [A-Za-z0-9._-], starting with a letter or digit,
// and never "." or "..". Such names are safe as one path segment in a TUF
// target path and in a storage key.
func ValidateName(kind, s string) error {
	if s == "" {
		return Errorf(EInvalid, "%s is empty", kind)
	}
	if len(s) > MaxNameLen {
		return Errorf(EInvalid, "%s %.20q... is longer than %d characters", kind, s, MaxNameLen)
	}
	if !isAlnum(s[0]) {
		return Errorf(EInvalid, "%s %q must start with a letter or digit", kind, s)
	}
	if strings.Contains(s, "..") {
		return Errorf(EInvalid, "%s %q must not contain %q", kind, s, "..")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return Errorf(EInvalid, "%s %q contains %s; allowed are letters, digits, '.', '_' and '-'", kind, s, describeByte(c))
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func describeByte(c byte) string {
	if c < 0x20 || c >= 0x7f {
		return fmt.Sprintf("byte 0x%02x", c)
	}
	return fmt.Sprintf("%q", string(c))
}
