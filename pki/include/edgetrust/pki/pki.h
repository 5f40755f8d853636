// Everything of edgetrust_pki in one include.
#pragma once

#include "edgetrust/pki/certificate.h"
#include "edgetrust/pki/csr.h"
#include "edgetrust/pki/key.h"
#include "edgetrust/pki/pkcs11.h"
