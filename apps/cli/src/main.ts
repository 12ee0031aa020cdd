console.log("chiral: nothing here yet")
