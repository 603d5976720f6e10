package rim

// PAP result codes (the first digit is the class), with the BIS extensions.
const (
	CodeOK                = 1000
	CodeAccepted          = 1001
	CodeOverQuota         = 1500
	CodeBadRequest        = 2000
	CodeForbidden         = 2001
	CodeAddressError      = 2002
	CodeBadURL            = 2003
	CodeNotFound          = 2004
	CodeCapabilities      = 2005
	CodeUnsupported       = 2006
	CodeDuplicate         = 2007
	CodeNotCancellable    = 2008
	CodeNotYetAvailable   = 2009
	CodeQuotaRejected     = 2500
	CodeInternal          = 3000
	CodeNotImplemented    = 3001
	CodeVersion           = 3002
	CodeNoLongerAvailable = 3003
	CodeCapability        = 3004
	CodeMultiple          = 3005
	CodeTransformation    = 3006
	CodeDeliveryMethod    = 3007
	CodeNetwork           = 3009
	CodeServiceFailure    = 4000
	CodeBusy              = 4001
	CodeExpired           = 4500
	CodeFailed            = 4501
	CodeNoApplication     = 4502
	CodeBlocked           = 4503
	CodeBISDone           = 21000
	CodeBISMalformed      = 22000
	CodeBISNoApp          = 22001
	CodeBISInvalidPIN     = 22002
	CodeBISStatus         = 22003
	CodeBISNoResults      = 22004
	CodeBISRateLimit      = 22005
	CodeBISInternal       = 23000
)

// Codes the handset's receiver answers a push with (HTTP-style statuses on the device
// link), with the meanings RIM gave them.
const (
	DeviceAccepted    = 200
	DeviceRefused     = 234 // refused, may be retried
	DeviceRefusedHard = 235
	DeviceUnreachable = 236 // the destination on the device cannot be reached
	DeviceResources   = 237 // out of resources
	DeviceBadType     = 238 // content type not supported
	DeviceMalformed   = 400 // bbsim's handset: a push it cannot read
)

var descs = map[int]string{
	CodeOK: "The request succeeded", CodeAccepted: "The request has been accepted for processing",
	CodeOverQuota: "Accepted over the daily quota", CodeBadRequest: "Bad request",
	CodeForbidden: "Forbidden", CodeAddressError: "Address error", CodeBadURL: "Bad URL",
	CodeNotFound: "Push-id not found", CodeCapabilities: "Capabilities mismatch",
	CodeUnsupported: "Unsupported function", CodeDuplicate: "Duplicate push-id",
	CodeNotCancellable: "Cancellation not possible", CodeNotYetAvailable: "Status not yet available",
	CodeQuotaRejected: "Quota rejection", CodeInternal: "Internal server error",
	CodeNotImplemented: "Not implemented", CodeVersion: "PAP version not supported",
	CodeNoLongerAvailable: "Message no longer available", CodeCapability: "Capability not supported",
	CodeMultiple: "Multiple recipients not supported", CodeTransformation: "Transformation failure",
	CodeDeliveryMethod: "Delivery method not possible", CodeNetwork: "Network not available",
	CodeServiceFailure: "Service failure", CodeBusy: "Server busy", CodeExpired: "Expired",
	CodeFailed: "Delivery failed", CodeNoApplication: "No application listening on the device",
	CodeBlocked: "Push service blocked on the device", CodeBISDone: "Done",
	CodeBISMalformed: "Malformed request", CodeBISNoApp: "Application ID not found",
	CodeBISInvalidPIN: "Invalid PIN", CodeBISStatus: "Incorrect status", CodeBISNoResults: "No results",
	CodeBISRateLimit: "Call-rate limit reached", CodeBISInternal: "Internal error",
	DeviceRefused: "Refused by the device (may be retried)", DeviceRefusedHard: "Refused by the device",
	DeviceUnreachable: "The destination on the device cannot be reached",
	DeviceResources:   "The device is out of resources", DeviceBadType: "Content type not supported by the device",
	DeviceMalformed: "Refused by the device as malformed",
}

// Desc is the description of a result code ("Result code N" for one it does not know).
func Desc(code int) string {
	if d, ok := descs[code]; ok {
		return d
	}
	return "Result code " + formatInt(code)
}

// Known reports whether Desc knows code.
func Known(code int) bool {
	_, ok := descs[code]
	return ok
}
