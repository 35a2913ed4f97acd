package budget

import (
	"errors"
	"fmt"
	"strings"

	"github.com/fluxcapacitor/flux"
)

// Errors of the user aggregate.
var (
	ErrInvalidUser   = errors.New("budget: invalid user")
	ErrUserDeleted   = errors.New("budget: user is deleted")
	ErrAlreadyExists = errors.New("budget: user already exists")
)

// UserSignedUp is the first event of a user (the seed's
// UserSignedUpDomainEvent_v1).
// Personal data is marked as in the PHP library (#[PersonalData]) and
// encrypted per user.
type UserSignedUp struct {
	UserID             string   `json:"userId" pii:"subject"`
	Email              string   `json:"email" pii:"data"`
	Firstname          string   `json:"firstname" pii:"data"`
	Lastname           string   `json:"lastname" pii:"data"`
	LanguagePreference string   `json:"languagePreference" pii:"data"`
	IsConsentGiven     bool     `json:"isConsentGiven"`
	Roles              []string `json:"roles"`
}

// UserFirstnameChanged records a new first name.
type UserFirstnameChanged struct {
	UserID    string `json:"userId" pii:"subject"`
	Firstname string `json:"firstname" pii:"data"`
}

// UserLastnameChanged records a new last name.
type UserLastnameChanged struct {
	UserID   string `json:"userId" pii:"subject"`
	Lastname string `json:"lastname" pii:"data"`
}

// UserDeleted records that the user closed their account.
type UserDeleted struct {
	UserID string `json:"userId"`
}

// User is a person using the budget application. It is snapshotted, and
// its state is the snapshot: the fields that hold personal data are marked
// like the events' (and PersonalDataSubject names the user), so snapshots
// are encrypted under the user's key and forgotten with the events.
type User struct {
	flux.Root
	Email              string `pii:"data"`
	Firstname          string `pii:"data"`
	Lastname           string `pii:"data"`
	LanguagePreference string `pii:"data"`
	ConsentGiven       bool
	Roles              []string
	Deleted            bool
}

// PersonalDataSubject names the data subject of the user's snapshots.
func (u *User) PersonalDataSubject() string { return u.ID() }

// SnapshotState implements flux.Snapshotter.
func (u *User) SnapshotState() any { return u }

// RestoreSnapshot implements flux.Snapshotter.
func (u *User) RestoreSnapshot(decode func(any) error) error { return decode(u) }

// RegisterUser creates a user (the command handler of SignUp calls it).
func RegisterUser(id, email, firstname, lastname, language string, consent bool) (*User, error) {
	var problems []string
	if id == "" {
		problems = append(problems, "id is empty")
	}
	if !strings.Contains(email, "@") {
		problems = append(problems, "email has no @")
	}
	if strings.TrimSpace(firstname) == "" {
		problems = append(problems, "first name is empty")
	}
	if !consent {
		problems = append(problems, "consent is required")
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrInvalidUser, strings.Join(problems, "; "))
	}
	u := new(User)
	u.SetID(id)
	flux.Raise(u, UserSignedUp{
		UserID: id, Email: strings.ToLower(email), Firstname: firstname, Lastname: lastname,
		LanguagePreference: language, IsConsentGiven: consent, Roles: []string{"ROLE_USER"},
	})
	return u, nil
}

// ChangeFirstname renames the user.
func (u *User) ChangeFirstname(name string) error {
	if err := u.alive(); err != nil {
		return err
	}
	if strings.TrimSpace(name) == "" {
		return fmt.Errorf("%w: first name is empty", ErrInvalidUser)
	}
	if name != u.Firstname {
		flux.Raise(u, UserFirstnameChanged{UserID: u.ID(), Firstname: name})
	}
	return nil
}

// ChangeLastname changes the user's last name.
func (u *User) ChangeLastname(name string) error {
	if err := u.alive(); err != nil {
		return err
	}
	if name != u.Lastname {
		flux.Raise(u, UserLastnameChanged{UserID: u.ID(), Lastname: name})
	}
	return nil
}

// Delete closes the user's account.
func (u *User) Delete() error {
	if err := u.alive(); err != nil {
		return err
	}
	flux.Raise(u, UserDeleted{UserID: u.ID()})
	return nil
}

func (u *User) alive() error {
	if u.Deleted {
		return fmt.Errorf("%w: %s", ErrUserDeleted, u.ID())
	}
	return nil
}

// Apply implements flux.Aggregate.
func (u *User) Apply(event any) {
	switch e := event.(type) {
	case UserSignedUp:
		u.Email, u.Firstname, u.Lastname = e.Email, e.Firstname, e.Lastname
		u.LanguagePreference, u.ConsentGiven, u.Roles = e.LanguagePreference, e.IsConsentGiven, e.Roles
	case UserFirstnameChanged:
		u.Firstname = e.Firstname
	case UserLastnameChanged:
		u.Lastname = e.Lastname
	case UserDeleted:
		u.Deleted = true
	}
}
